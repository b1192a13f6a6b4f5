/*
 * The indexes (store/index.c): kept incrementally by every commit, they must equal a rebuild
 * from nothing after any sequence of operations; pages and --at answered from them must equal
 * the walk of the whole history; and a damaged index is never answered.
 */
#include "store_test_util.h"

#include <time.h>

static uint32_t next_random(fixture *f, uint32_t below)
{
    f->rng = f->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(f->rng >> 33) % below;
}

/* Push version `version` of `name` with a few distinct bytes, created at `created`. */
static void push(fixture *f, const char *name, const char *version, int64_t created)
{
    imgstore_push_opts opts = {.name = name,
                               .version = version,
                               .actor = "test <t@example>",
                               .created = created,
                               .signers = {test_keys, 1}};
    imgstore_push *p = NULL;
    imgstore_manifest *m = NULL;
    bool made = false;
    char bytes[64];

    snprintf(bytes, sizeof(bytes), "%s %s %llu", name, version, (unsigned long long)f->rng);
    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, bytes, strlen(bytes)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(p, &m, &made), 0);
    imgstore_manifest_free(m);
    imgstore_store_push_free(p);
}

static void change_policy(fixture *f)
{
    imgstore_policy *policy = NULL;
    const imgstore_signers signers = {test_keys, 1};

    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    policy->channel_ttl_seconds = policy->channel_ttl_seconds == 86400 ? 172800 : 86400;
    assert_int_equal(imgstore_store_policy_update(NULL, f->store, policy, &signers, "test"), 0);
    imgstore_policy_free(policy);
}

/* A random mix of operations on two images and two channels, checking after every one that
 * the index the commit kept is the one a rebuild gives. */
static void random_operations(fixture *f, int count)
{
    static const char *const images[] = {"app", "kernel"};
    static const char *const channels[] = {"prod", "staging"};
    int pushed[2] = {0, 0};

    for (int i = 0; i < count; i++) {
        const char *image = images[next_random(f, 2)];
        int which = image == images[0] ? 0 : 1;
        uint32_t op = next_random(f, 10);
        imgstore_channel_opts opts = {.actor = "test", .signers = {test_keys, 1}};
        imgstore_channel_state *state = NULL;
        char version[32];

        if (pushed[which] < 2 || op < 4) {
            /* mostly in order, sometimes back-dated: the index sorts by creation time */
            int64_t created = 1700000000 + i * 60 - (op == 0 ? 100000 : 0);

            snprintf(version, sizeof(version), "1.%d", pushed[which]++);
            push(f, image, version, op == 1 ? 1700000000 + 7 : created);
        } else if (op < 7) {
            snprintf(version, sizeof(version), "1.%u", next_random(f, (uint32_t)pushed[which]));
            assert_int_equal(imgstore_store_deploy(&state, f->store, image, version,
                                                   channels[next_random(f, 2)], &opts),
                             0);
        } else if (op < 9) {
            int err = imgstore_store_rollback(&state, f->store, image, channels[next_random(f, 2)],
                                              &opts);

            assert_true(err == 0 || err == IMGSTORE_ENOTFOUND);
        } else {
            change_policy(f);
        }
        imgstore_channel_state_free(state);
        if (imgstore_store_index_check(f->store) != 0)
            fail_msg("after operation %d: %s", i, imgstore_error_last());
    }
}

static void index_kept_by_each_commit_equals_a_rebuild(void **state)
{
    fixture *f = *state;

    random_operations(f, 80);
}

/* Pages of versions, chained by their cursor, are the whole list in order. */
static void version_pages_chain_to_the_whole_list(void **state)
{
    fixture *f = *state;
    imgstore_version_row *all = NULL;
    size_t all_count = 0, total = 0, seen = 0, before = SIZE_MAX;

    random_operations(f, 40);
    assert_int_equal(
        imgstore_store_versions_page(&all, &all_count, &total, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(all_count, total);
    for (size_t i = 1; i < all_count; i++) { /* newest first */
        int c = strcmp(all[i - 1].created, all[i].created);

        assert_true(c > 0 || (c == 0 && strcmp(all[i - 1].version, all[i].version) > 0));
    }
    while (seen < all_count) {
        imgstore_version_row *page = NULL;
        size_t n = 0;

        assert_int_equal(imgstore_store_versions_page(&page, &n, NULL, f->store, "app", before, 3),
                         0);
        assert_true(n > 0 && n <= 3);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(page[i].version, all[seen + i].version);
        seen += n;
        before = page[n - 1].row;
        imgstore_version_rows_free(page, n);
    }
    assert_int_equal(before, 0);
    imgstore_version_rows_free(all, all_count);
}

/* The row of each version (what the OCI tag list's `last` starts after) is found by a binary
 * search of the index, across segments, back-dated versions included. */
static void version_position_is_the_row_of_each_version(void **state)
{
    fixture *f = *state;
    imgstore_version_row *all = NULL;
    size_t all_count = 0, row = 0;
    char version[32];

    for (int i = 0; i < 70; i++) { /* two segments of 64 rows */
        snprintf(version, sizeof(version), "2.%d", i);
        push(f, "app", version, 1700000000 + i * 60 - (next_random(f, 5) == 0 ? 100000 : 0));
    }
    assert_int_equal(
        imgstore_store_versions_page(&all, &all_count, NULL, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(all_count, 70);
    for (size_t i = 0; i < all_count; i++) {
        assert_int_equal(imgstore_store_version_position(&row, f->store, "app", all[i].version), 0);
        assert_int_equal(row, all[i].row);
    }
    assert_int_equal(imgstore_store_version_position(&row, f->store, "app", "9.9"),
                     IMGSTORE_ENOTFOUND);
    assert_int_equal(imgstore_store_version_position(&row, f->store, "nosuch", "2.0"),
                     IMGSTORE_ENOTFOUND);
    imgstore_version_rows_free(all, all_count);
}

typedef struct {
    char commits[256][41];
    size_t count;
    uint64_t next;
} answer;

static void ask(answer *out, fixture *f, const imgstore_history_query *q)
{
    imgstore_history_entry *entries = NULL;
    size_t count = 0;

    memset(out, 0, sizeof(*out));
    assert_int_equal(imgstore_store_history_query(&entries, &count, &out->next, f->store, "app", q),
                     0);
    assert_true(count <= 256);
    for (size_t i = 0; i < count; i++)
        memcpy(out->commits[i], entries[i].commit, 41);
    out->count = count;
    imgstore_history_free(entries, count);
}

static void same_answer(const answer *a, const answer *b)
{
    assert_int_equal(a->count, b->count);
    assert_int_equal(a->next, b->next);
    for (size_t i = 0; i < a->count; i++)
        assert_string_equal(a->commits[i], b->commits[i]);
}

/* A commit written by something else (stock git): the indexes are no longer current. */
static void foreign_commit(fixture *f)
{
    git_oid head, id;
    git_commit *tip = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;

    assert_int_equal(git_reference_name_to_id(&head, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&tip, f->store->repo, &head), 0);
    assert_int_equal(git_commit_tree(&tree, tip), 0);
    assert_int_equal(git_signature_now(&sig, "git", "git@example"), 0);
    assert_int_equal(git_commit_create_v(&id, f->store->repo, IMGSTORE_STORE_REF, sig, sig, NULL,
                                         "by hand", tree, 1, tip),
                     0);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(tip);
}

static void history_from_the_index_equals_the_walk(void **state)
{
    fixture *f = *state;
    static const char *const channels[] = {NULL, "prod", "staging"};
    static answer indexed[3], at_indexed[3][4], walked;
    imgstore_history_entry *moves = NULL;
    size_t move_count = 0;
    int64_t times[4];

    random_operations(f, 60);
    /* the times to ask --at about: before the first move, at some moves, after the last */
    assert_int_equal(imgstore_store_history(&moves, &move_count, f->store, "app", "prod"), 0);
    assert_true(move_count > 2);
    assert_int_equal(imgstore_time_parse(&times[0], moves[move_count - 1].state->time), 0);
    times[0] -= 1;
    assert_int_equal(imgstore_time_parse(&times[1], moves[move_count / 2].state->time), 0);
    assert_int_equal(imgstore_time_parse(&times[2], moves[0].state->time), 0);
    times[3] = times[2] + 3600;
    imgstore_history_free(moves, move_count);

    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            foreign_commit(f); /* from now on, the walk answers */
        for (int c = 0; c < 3; c++) {
            imgstore_history_query all = {.channel = channels[c]};
            imgstore_history_query page = {.channel = channels[c], .limit = 4};
            answer got;

            ask(pass ? &walked : &indexed[c], f, &all);
            if (pass)
                same_answer(&indexed[c], &walked);
            /* pages of 4, chained by their cursor, are the whole history */
            for (size_t seen = 0;;) {
                ask(&got, f, &page);
                for (size_t i = 0; i < got.count; i++)
                    assert_string_equal(got.commits[i], indexed[c].commits[seen + i]);
                seen += got.count;
                if (!got.next) {
                    assert_int_equal(seen, indexed[c].count);
                    break;
                }
                page.before = got.next;
            }
            if (!channels[c])
                continue;
            for (int t = 0; t < 4; t++) {
                imgstore_history_query at = {
                    .channel = channels[c], .has_at = true, .at = times[t]};

                ask(pass ? &walked : &at_indexed[c][t], f, &at);
                assert_true((pass ? walked : at_indexed[c][t]).count == (t > 0));
                if (pass)
                    same_answer(&at_indexed[c][t], &walked);
            }
        }
    }
}

/* Rewrite the first segment of a log in the tip's tree with `bytes` (a new commit). */
typedef struct {
    imgstore_store *store;
    const char *path;
    const char *bytes;
} segment_edit;

static int replace_segment(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    segment_edit *e = payload;
    git_oid blob;

    assert_int_equal(imgstore_store__write_blob(&blob, e->store, e->bytes, strlen(e->bytes)), 0);
    *tree_out = *git_tree_id(tip);
    assert_int_equal(
        imgstore_store__tree_set(tree_out, e->store, e->path, &blob, GIT_FILEMODE_BLOB), 0);
    *message_out = strdup("damage the index\n");
    return 0;
}

static void damaged_version_row_is_never_answered(void **state)
{
    fixture *f = *state;
    imgstore_version_row *rows = NULL;
    size_t count = 0;
    char *segment = NULL, *tab;
    git_tree *tip = NULL;
    segment_edit e = {f->store, "index/app/versions/00000/000", NULL};

    push(f, "app", "1.0", 1700000000);
    push(f, "app", "1.1", 1700000100);
    assert_int_equal(imgstore_store__tip_tree(&tip, f->store), 0);
    assert_int_equal(imgstore_store__read_small_blob(&segment, NULL, f->store, tip, e.path, 4096),
                     0);
    git_tree_free(tip);
    /* the first row's size (4th field), made larger: the manifest id still matches */
    tab = strchr(strchr(strchr(segment, '\t') + 1, '\t') + 1, '\t');
    tab[1] = '9';
    e.bytes = segment;
    assert_int_equal(imgstore_store__commit(f->store, "test", test_key, replace_segment, &e), 0);
    free(segment);

    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, NULL, f->store, "app", SIZE_MAX, 0),
        IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "reindex"));
    assert_int_equal(imgstore_store_index_check(f->store), IMGSTORE_EVERIFY);
    /* a rebuild repairs it, and the answer is right again */
    assert_int_equal(imgstore_store_reindex(NULL, f->store, "test", test_key), 0);
    assert_int_equal(imgstore_store_index_check(f->store), 0);
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, NULL, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(count, 2);
    assert_string_equal(rows[0].version, "1.1");
    imgstore_version_rows_free(rows, count);
}

static void damaged_index_never_blocks_a_write(void **state)
{
    fixture *f = *state;
    static const char *const logs[] = {"index/app/events/00000/000",
                                       "index/app/versions/00000/000"};
    imgstore_channel_opts opts = {.actor = "test", .signers = {test_keys, 1}};
    imgstore_channel_state *moved = NULL;

    push(f, "app", "1.0", 1700000000);
    for (size_t i = 0; i < 2; i++) {
        segment_edit e = {f->store, logs[i], "not rows of text"}; /* no newline */
        char version[16];

        assert_int_equal(imgstore_store__commit(f->store, "test", test_key, replace_segment, &e),
                         0);
        snprintf(version, sizeof(version), "1.%zu", i + 1);
        push(f, "app", version, 1700000100 + (int64_t)i); /* asserts it succeeds */
        assert_int_equal(imgstore_store_deploy(&moved, f->store, "app", version, "prod", &opts), 0);
        imgstore_channel_state_free(moved);
        assert_int_equal(imgstore_store_index_check(f->store), IMGSTORE_EVERIFY);
        assert_int_equal(imgstore_store_reindex(NULL, f->store, "test", test_key), 0);
        assert_int_equal(imgstore_store_index_check(f->store), 0);
    }
}

static void stale_index_answers_from_the_manifests_until_reindex(void **state)
{
    fixture *f = *state;
    imgstore_version_row *rows = NULL;
    size_t count = 0;
    bool changed = false;

    push(f, "app", "1.0", 1700000000);
    foreign_commit(f);
    push(f, "app", "1.1", 1700000100); /* not indexed: the oplog no longer ends at its parent */
    assert_int_equal(imgstore_store_index_check(f->store), IMGSTORE_EVERIFY);
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, NULL, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(count, 2);
    assert_string_equal(rows[0].version, "1.1");
    imgstore_version_rows_free(rows, count);
    assert_int_equal(imgstore_store_reindex(&changed, f->store, "test", test_key), 0);
    assert_true(changed);
    assert_int_equal(imgstore_store_index_check(f->store), 0);
    push(f, "app", "1.2", 1700000200); /* and kept again from here */
    assert_int_equal(imgstore_store_index_check(f->store), 0);
    assert_int_equal(imgstore_store_reindex(&changed, f->store, "test", test_key), 0);
    assert_false(changed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(index_kept_by_each_commit_equals_a_rebuild, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(version_pages_chain_to_the_whole_list, setup, teardown),
        cmocka_unit_test_setup_teardown(version_position_is_the_row_of_each_version, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(history_from_the_index_equals_the_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_version_row_is_never_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_index_never_blocks_a_write, setup, teardown),
        cmocka_unit_test_setup_teardown(stale_index_answers_from_the_manifests_until_reindex, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
