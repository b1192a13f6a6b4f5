/*
 * Retention (store/prune.c, store/which.c, issue #12): each rule that keeps a version has a
 * test that fails without it; the indexes a prune commit keeps equal a rebuild; what a prune
 * says it frees is what only the removed versions held; and `which` through the digest index
 * answers what a walk of every version in history answers, on random stores.
 */
#include "store_test_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

static uint32_t next_random(fixture *f, uint32_t below)
{
    f->rng = f->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(f->rng >> 33) % below;
}

static const imgstore_signers signers = {test_keys, 1};

/* Push `name` `version` created at `created` with one file per content (NULL-terminated):
 * the same content gives the same file bytes in every version. */
static void push_files(fixture *f, const char *name, const char *version, int64_t created,
                       const char *const *contents)
{
    imgstore_push_opts opts = {.name = name,
                               .version = version,
                               .actor = "test <t@example>",
                               .created = created,
                               .signers = {test_keys, 1}};
    imgstore_push *p = NULL;
    imgstore_manifest *m = NULL;
    bool made = false;

    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    for (size_t i = 0; contents[i]; i++) {
        char file[32];

        snprintf(file, sizeof(file), "f%zu.bin", i);
        assert_int_equal(imgstore_store_push_file_begin(p, file, "unknown", 0), 0);
        assert_int_equal(imgstore_store_push_write(p, contents[i], strlen(contents[i])), 0);
        assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    }
    assert_int_equal(imgstore_store_push_commit(p, &m, &made), 0);
    imgstore_manifest_free(m);
    imgstore_store_push_free(p);
}

/* Versions 1..count of `name`, each with its own bytes, created a minute apart long ago. */
static void push_many(fixture *f, const char *name, int count)
{
    for (int i = 1; i <= count; i++) {
        char version[32], bytes[64];
        const char *contents[] = {bytes, NULL};

        snprintf(version, sizeof(version), "%d", i);
        snprintf(bytes, sizeof(bytes), "%s version %d", name, i);
        push_files(f, name, version, 1600000000 + i * 60, contents);
    }
}

static void move(fixture *f, const char *name, const char *channel, const char *version,
                 bool rollback)
{
    imgstore_channel_opts opts = {
        .actor = "test", .to_version = rollback ? version : NULL, .signers = {test_keys, 1}};
    imgstore_channel_state *state = NULL;

    if (rollback)
        assert_int_equal(imgstore_store_rollback(&state, f->store, name, channel, &opts), 0);
    else
        assert_int_equal(imgstore_store_deploy(&state, f->store, name, version, channel, &opts), 0);
    imgstore_channel_state_free(state);
}

static bool removed(const imgstore_prune_plan *plan, const char *name, const char *version)
{
    for (size_t i = 0; i < plan->removed_count; i++)
        if (!strcmp(plan->removed[i].name, name) && !strcmp(plan->removed[i].version, version))
            return true;
    return false;
}

static const char *kept_for(const imgstore_prune_plan *plan, const char *version)
{
    for (size_t i = 0; i < plan->kept_count; i++)
        if (!strcmp(plan->kept[i].version, version))
            return plan->kept[i].reason;
    return NULL;
}

static imgstore_prune_plan *plan_of(fixture *f, const char *name, size_t keep, int64_t now)
{
    imgstore_prune_opts opts = {.name = name, .keep = keep, .now = now};
    imgstore_prune_plan *plan = NULL;

    if (imgstore_store_prune_plan(&plan, f->store, &opts) != 0)
        fail_msg("plan: %s", imgstore_error_last());
    return plan;
}

static bool stored(fixture *f, const char *name, const char *version)
{
    imgstore_manifest *m = NULL;
    int err = imgstore_store_manifest_get(&m, NULL, f->store, name, version);

    imgstore_manifest_free(m);
    return err == 0;
}

static void prune_keeps_the_newest_n_and_removes_the_rest(void **state)
{
    fixture *f = *state;
    imgstore_prune_opts opts = {.name = "app", .keep = 2};
    imgstore_prune_plan *plan = NULL;
    imgstore_version_row *rows = NULL;
    size_t count = 0, total = 0;

    push_many(f, "app", 5);
    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "test"), 0);
    assert_int_equal(plan->removed_count, 3);
    assert_true(removed(plan, "app", "1") && removed(plan, "app", "2") &&
                removed(plan, "app", "3"));
    assert_int_equal(strlen(plan->commit), 40);
    assert_false(stored(f, "app", "1"));
    assert_true(stored(f, "app", "4") && stored(f, "app", "5"));
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, &total, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(total, 2);
    assert_string_equal(rows[0].version, "5");
    imgstore_version_rows_free(rows, count);
    if (imgstore_store_index_check(f->store) != 0)
        fail_msg("index after prune: %s", imgstore_error_last());
    imgstore_prune_plan_free(plan);
    /* nothing left to remove: a success with no commit */
    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "test"), 0);
    assert_int_equal(plan->removed_count, 0);
    assert_string_equal(plan->commit, "");
    imgstore_prune_plan_free(plan);
}

static void prune_never_removes_what_a_channel_runs(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan;

    push_many(f, "app", 4);
    move(f, "app", "prod", "1", false);
    /* far past the window: only "runs it now" can keep version 1 */
    plan = plan_of(f, "app", 1, (int64_t)time(NULL) + 400 * 86400);
    assert_false(removed(plan, "app", "1"));
    assert_non_null(kept_for(plan, "1"));
    assert_non_null(strstr(kept_for(plan, "1"), "channel prod runs it"));
    assert_true(removed(plan, "app", "2") && removed(plan, "app", "3"));
    imgstore_prune_plan_free(plan);
}

static void prune_never_removes_what_a_rollback_reaches(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan;

    push_many(f, "app", 5);
    move(f, "app", "prod", "1", false);
    move(f, "app", "prod", "2", false);
    move(f, "app", "prod", "5", false);
    plan = plan_of(f, "app", 1, (int64_t)time(NULL) + 400 * 86400);
    assert_false(removed(plan, "app", "1"));
    assert_false(removed(plan, "app", "2"));
    assert_non_null(strstr(kept_for(plan, "2"), "rollback stack"));
    assert_non_null(strstr(kept_for(plan, "1"), "rollback stack"));
    assert_true(removed(plan, "app", "3") && removed(plan, "app", "4"));
    imgstore_prune_plan_free(plan);
}

static void prune_keeps_what_a_channel_ran_within_the_window(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan;

    push_many(f, "app", 4);
    move(f, "app", "prod", "1", false);
    move(f, "app", "prod", "2", false);
    move(f, "app", "prod", "1", true); /* rollback to 1 pops 2 off the stack */
    plan = plan_of(f, "app", 1, 0);
    assert_false(removed(plan, "app", "2"));
    assert_non_null(strstr(kept_for(plan, "2"), "within the rollback window"));
    imgstore_prune_plan_free(plan);
    /* once the window has passed, version 2 goes */
    plan = plan_of(f, "app", 1, (int64_t)time(NULL) + IMGSTORE_PRUNE_WINDOW_DEFAULT + 86400);
    assert_true(removed(plan, "app", "2"));
    assert_false(removed(plan, "app", "1"));
    imgstore_prune_plan_free(plan);
}

static void prune_older_than_spares_younger_versions(void **state)
{
    fixture *f = *state;
    imgstore_prune_opts opts = {.name = "app", .keep = 1};
    imgstore_prune_plan *plan = NULL;
    const char *contents[] = {"young bytes", NULL};

    push_many(f, "app", 3); /* created in 2020 */
    push_files(f, "app", "young", (int64_t)time(NULL) - 3600, contents);
    push_files(f, "app", "newest", (int64_t)time(NULL) - 60, (const char *const[]){"n", NULL});
    opts.older_than = 7 * 86400;
    assert_int_equal(imgstore_store_prune_plan(&plan, f->store, &opts), 0);
    assert_int_equal(plan->removed_count, 3);
    assert_false(removed(plan, "app", "young"));
    assert_int_equal(plan->window, 7 * 86400);
    imgstore_prune_plan_free(plan);
}

static void prune_is_refused_to_keys_that_may_not_release(void **state)
{
    fixture *f = *state;
    imgstore_sign_key *stranger = NULL;
    const imgstore_sign_key *keys[1];
    imgstore_signers who;
    imgstore_prune_opts opts = {.keep = 1};
    imgstore_prune_plan *plan = NULL;
    char tip[41], after[41];

    push_many(f, "app", 3);
    assert_int_equal(imgstore_sign_key_generate(&stranger, "stranger"), 0);
    keys[0] = stranger;
    who = (imgstore_signers){keys, 1};
    assert_int_equal(imgstore_store_tip_id(tip, f->store), 0);
    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &who, "x"), IMGSTORE_EVERIFY);
    assert_null(plan);
    assert_int_equal(imgstore_store_tip_id(after, f->store), 0);
    assert_string_equal(tip, after);
    opts.keep = 0;
    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "x"),
                     IMGSTORE_EINVALID);
    imgstore_sign_key_free(stranger);
}

/* Many versions over several segments, back-dated ones among them, channels moving: the
 * index after each prune equals a rebuild, history still renders, and verify passes. */
static void ignore(const imgstore_verify_result *result, void *payload)
{
    (void)payload;
    if (result->status != 0)
        print_message("%s %s: %s\n", result->name ? result->name : "",
                      result->version ? result->version : "", result->message);
}

static void index_after_prune_equals_a_rebuild(void **state)
{
    fixture *f = *state;
    imgstore_history_entry *entries = NULL;
    size_t count = 0, prunes = 0, pushes = 0;

    for (int round = 0; round < 2; round++) {
        imgstore_prune_opts opts = {.keep = 5 + next_random(f, 20)};
        imgstore_prune_plan *plan = NULL;

        /* past one segment of 64 rows: the rewrite starts inside the log and drops the
         * segments past its new end */
        for (int i = 0; i < (round ? 30 : 90); i++) {
            char version[32], bytes[64];
            const char *contents[] = {bytes, NULL};
            const char *image = next_random(f, 8) ? "app" : "web";

            snprintf(version, sizeof(version), "%d.%d", round, i);
            snprintf(bytes, sizeof(bytes), "%s %d %d", image, round, i % 7);
            push_files(f, image, version,
                       1600000000 + round * 100000 + i * 60 - (next_random(f, 5) ? 0 : 50000),
                       contents);
            if (next_random(f, 10) == 0)
                move(f, image, "prod", version, false);
        }
        if (imgstore_store_prune(&plan, f->store, &opts, &signers, "test") != 0)
            fail_msg("prune: %s", imgstore_error_last());
        assert_true(plan->removed_count > 0);
        if (imgstore_store_index_check(f->store) != 0)
            fail_msg("round %d: %s", round, imgstore_error_last());
        imgstore_prune_plan_free(plan);
    }
    assert_int_equal(imgstore_store_history(&entries, &count, f->store, "app", NULL), 0);
    for (size_t i = 0; i < count; i++) {
        prunes += !strcmp(entries[i].action, "prune");
        pushes += !strcmp(entries[i].action, "push");
        if (!strcmp(entries[i].action, "prune"))
            assert_null(entries[i].version);
    }
    assert_int_equal(prunes, 2);
    assert_true(pushes > 90); /* the pushes of pruned versions are still history */
    imgstore_history_free(entries, count);
    assert_int_equal(imgstore_store_verify_trust(f->store, ignore, NULL), 0);
    assert_int_equal(imgstore_store_fsck(f->store, ignore, NULL), 0);
}

static void prune_reports_what_only_the_removed_versions_hold(void **state)
{
    fixture *f = *state;
    imgstore_prune_plan *plan;
    const char *v1[] = {"only in one", "shared by all", NULL};
    const char *v2[] = {"only in two", "shared by all", NULL};
    const char *v3[] = {"shared by all", "only in two", NULL};
    const char *other[] = {"only in one", NULL};

    push_files(f, "app", "1", 1600000000, v1);
    push_files(f, "app", "2", 1600000060, v2);
    push_files(f, "app", "3", 1600000120, v3);
    plan = plan_of(f, "app", 1, 0);
    assert_int_equal(plan->removed_count, 2);
    /* only "only in one" is held by no kept version */
    assert_int_equal(plan->files_freed, 1);
    assert_int_equal(plan->chunks_freed, 1);
    assert_int_equal(plan->bytes_freed, strlen("only in one"));
    imgstore_prune_plan_free(plan);
    /* another image holding those bytes keeps them: the digest index says so */
    push_files(f, "web", "1", 1600000000, other);
    plan = plan_of(f, "app", 1, 0);
    assert_int_equal(plan->files_freed, 0);
    assert_int_equal(plan->bytes_freed, 0);
    imgstore_prune_plan_free(plan);
}

static bool object_stored(fixture *f, const git_oid *oid)
{
    git_odb *odb = NULL;
    bool found;

    assert_int_equal(git_repository_odb(&odb, f->store->repo), 0);
    assert_int_equal(git_odb_refresh(odb), 0);
    found = git_odb_exists(odb, oid);
    git_odb_free(odb);
    return found;
}

/* A push in flight reuses an old unreachable loose object (the residue of a push killed
 * weeks ago); a gc --prune running between its chunk writes and its commit must not remove
 * it: the reuse freshens the object (objects.c), as git does. */
static void gc_prune_spares_an_old_object_a_push_in_flight_reuses(void **state)
{
    fixture *f = *state;
    static const char bytes[] = "one chunk, written weeks ago by a push that was killed";
    imgstore_push_opts opts = {.name = "app", .version = "1", .signers = {test_keys, 1}};
    imgstore_gc_opts gc = {.prune = true, .prune_expire = IMGSTORE_GC_PRUNE_EXPIRE_DEFAULT};
    struct timespec old[2] = {{time(NULL) - 30 * 86400, 0}, {time(NULL) - 30 * 86400, 0}};
    imgstore_push *p = NULL;
    imgstore_manifest *m = NULL;
    imgstore_gc_stats stats;
    bool made = false;
    char path[4200], hex[GIT_OID_HEXSZ + 1];
    git_oid blob;

    assert_int_equal(git_blob_create_from_buffer(&blob, f->store->repo, bytes, strlen(bytes)), 0);
    git_oid_tostr(hex, sizeof(hex), &blob);
    snprintf(path, sizeof(path), "%s/%.2s/%s", f->store->objects_dir, hex, hex + 2);
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);

    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, bytes, strlen(bytes)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_gc(&stats, f->store, &gc), 0); /* between write and commit */
    assert_true(object_stored(f, &blob));                          /* loose, or packed by that gc */
    assert_int_equal(imgstore_store_push_commit(p, &m, &made), 0);
    imgstore_store_push_free(p);
    imgstore_manifest_free(m);
    assert_int_equal(imgstore_store_verify(f->store, "app", "1", ignore, NULL), 0);
    /* unreachable and untouched for the grace period: removed */
    assert_int_equal(git_blob_create_from_buffer(&blob, f->store->repo, "junk", 4), 0);
    git_oid_tostr(hex, sizeof(hex), &blob);
    snprintf(path, sizeof(path), "%s/%.2s/%s", f->store->objects_dir, hex, hex + 2);
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    assert_int_equal(imgstore_store_gc(&stats, f->store, &gc), 0);
    assert_int_equal(stats.objects_pruned, 1);
    assert_false(object_stored(f, &blob));
}

/* ---- which ------------------------------------------------------------------------------ */

typedef struct {
    char sha256[65];
    char name[32], version[32];
} held;

static void sha_of(char out[65], const char *text)
{
    imgstore_sha256 *sha = NULL;

    assert_int_equal(imgstore_sha256_new(&sha), 0);
    imgstore_sha256_update(sha, text, strlen(text));
    imgstore_sha256_final_hex(sha, out);
    imgstore_sha256_free(sha);
}

static bool where_has(const imgstore_where *rows, size_t count, const char *name,
                      const char *version)
{
    for (size_t i = 0; i < count; i++)
        if (!strcmp(rows[i].name, name) && !strcmp(rows[i].version, version))
            return true;
    return false;
}

static bool in_list(char **list, size_t count, const char *channel)
{
    for (size_t i = 0; i < count; i++)
        if (!strcmp(list[i], channel))
            return true;
    return false;
}

/* Random pushes sharing files, deploys and prunes; then for every content: `which` names
 * exactly the versions that ever held it (the test's own record of every push, the walk of
 * history), marks stored exactly those the tip holds, and names the channels that run it. */
static void which_equals_a_walk_of_every_version(void **state)
{
    fixture *f = *state;
    static const char *const contents[] = {"alpha", "beta", "gamma", "delta", "epsilon"};
    held log[200];
    size_t logged = 0;
    char version[32];

    for (int i = 0; i < 40; i++) {
        const char *image = next_random(f, 2) ? "app" : "web";
        const char *files[3] = {contents[next_random(f, 5)], contents[next_random(f, 5)], NULL};

        if (files[0] == files[1])
            files[1] = NULL;
        snprintf(version, sizeof(version), "v%d", i);
        push_files(f, image, version, 1600000000 + i * 60, files);
        for (size_t k = 0; files[k]; k++) {
            sha_of(log[logged].sha256, files[k]);
            snprintf(log[logged].name, sizeof(log[logged].name), "%s", image);
            snprintf(log[logged].version, sizeof(log[logged].version), "%s", version);
            logged++;
        }
        if (next_random(f, 4) == 0)
            move(f, image, "prod", version, false);
        if (i == 25) {
            imgstore_prune_opts opts = {.keep = 3};
            imgstore_prune_plan *plan = NULL;

            assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "t"), 0);
            assert_true(plan->removed_count > 0);
            imgstore_prune_plan_free(plan);
        }
    }
    for (size_t c = 0; c < 5; c++) {
        imgstore_where *rows = NULL;
        size_t count = 0, expect = 0;
        char sha[65];

        sha_of(sha, contents[c]);
        if (imgstore_store_which(&rows, &count, f->store, sha, true) != 0)
            fail_msg("which: %s", imgstore_error_last());
        for (size_t k = 0; k < logged; k++) {
            if (strcmp(log[k].sha256, sha) != 0)
                continue;
            expect++;
            assert_true(where_has(rows, count, log[k].name, log[k].version));
        }
        assert_int_equal(count, expect);
        for (size_t r = 0; r < count; r++) {
            imgstore_channel_state *st = NULL;

            assert_int_equal(rows[r].stored, stored(f, rows[r].name, rows[r].version));
            if (imgstore_store_channel_get(&st, f->store, rows[r].name, "prod") == 0) {
                assert_int_equal(in_list(rows[r].running, rows[r].running_count, "prod"),
                                 strcmp(st->version, rows[r].version) == 0);
                if (in_list(rows[r].running, rows[r].running_count, "prod"))
                    assert_true(in_list(rows[r].ran, rows[r].ran_count, "prod"));
            }
            imgstore_channel_state_free(st);
        }
        imgstore_where_free(rows, count);
    }
    if (imgstore_store_index_check(f->store) != 0)
        fail_msg("index: %s", imgstore_error_last());
}

static void which_refuses_what_is_not_a_digest(void **state)
{
    fixture *f = *state;
    imgstore_where *rows = NULL;
    size_t count = 0;

    assert_int_equal(imgstore_store_which(&rows, &count, f->store, "abc", false),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_store_which(&rows, &count, f->store,
                                          "0000000000000000000000000000000000000000000000000000000"
                                          "000000000",
                                          false),
                     0);
    assert_int_equal(count, 0);
    imgstore_where_free(rows, count);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(prune_keeps_the_newest_n_and_removes_the_rest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(prune_never_removes_what_a_channel_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(prune_never_removes_what_a_rollback_reaches, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(prune_keeps_what_a_channel_ran_within_the_window, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(prune_older_than_spares_younger_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(prune_is_refused_to_keys_that_may_not_release, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(index_after_prune_equals_a_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(prune_reports_what_only_the_removed_versions_hold, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(gc_prune_spares_an_old_object_a_push_in_flight_reuses,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(which_equals_a_walk_of_every_version, setup, teardown),
        cmocka_unit_test_setup_teardown(which_refuses_what_is_not_a_digest, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
