/*
 * The store API end to end on a temporary repository: push and read back, immutability,
 * idempotent re-push, channels (deploy, rollback stack, history), verification of damaged
 * chunks, range reads. The CLI and stock git are exercised by tests/integration.
 */
#include "store_test_util.h"

/* Push one file, fed to the store in odd-sized pieces. */
static int push_bytes(imgstore_manifest **out, bool *created, imgstore_store *store,
                      const char *name, const char *version, const char *file, const uint8_t *bytes,
                      size_t len)
{
    imgstore_push_opts opts = {
        .name = name, .version = version, .actor = "test <t@example>", .signers = TEST_SIGNERS};
    imgstore_push *push = NULL;
    int err;

    *out = NULL;
    if ((err = imgstore_store_push_begin(&push, store, &opts)) < 0)
        return err;
    if ((err = imgstore_store_push_file_begin(push, file, "unknown", len)) == 0) {
        for (size_t off = 0; off < len && err == 0; off += 77777)
            err =
                imgstore_store_push_write(push, bytes + off, len - off < 77777 ? len - off : 77777);
        if (err == 0)
            err = imgstore_store_push_file_end(push, NULL);
    }
    if (err == 0)
        err = imgstore_store_push_commit(push, out, created);
    imgstore_store_push_free(push);
    return err;
}

static void push_then_read_returns_same_bytes(void **state)
{
    fixture *f = *state;
    size_t len = 9 * 1024 * 1024 + 123;
    uint8_t *bytes = pseudo_random(len, 1);
    imgstore_manifest *m = NULL, *again = NULL;
    membuf out = {malloc(len), 0, len};
    bool created = false;

    assert_int_equal(push_bytes(&m, &created, f->store, "app", "1.0", "app.bin", bytes, len), 0);
    assert_true(created);
    assert_int_equal(m->files[0].size, len);
    assert_true(m->files[0].chunk_count >= 3);
    assert_int_equal(imgstore_store_manifest_get(&again, NULL, f->store, "app", "1.0"), 0);
    assert_int_equal(
        imgstore_store_file_read(f->store, again, "app.bin", 0, UINT64_MAX, mem_write, &out), 0);
    assert_int_equal(out.len, len);
    assert_memory_equal(out.buf, bytes, len);
    imgstore_manifest_free(m);
    imgstore_manifest_free(again);
    free(out.buf);
    free(bytes);
}

static void range_read_crosses_chunk_boundaries(void **state)
{
    fixture *f = *state;
    size_t len = 6 * 1024 * 1024;
    uint8_t *bytes = pseudo_random(len, 2);
    imgstore_manifest *m = NULL;
    membuf out = {malloc(len), 0, len};
    bool created;
    const uint64_t from = 1024 * 1024 - 5, count = 3 * 1024 * 1024 + 11;

    assert_int_equal(push_bytes(&m, &created, f->store, "app", "r", "a.bin", bytes, len), 0);
    assert_int_equal(imgstore_store_file_read(f->store, m, "a.bin", from, count, mem_write, &out),
                     0);
    assert_int_equal(out.len, count);
    assert_memory_equal(out.buf, bytes + from, count);
    out.len = 0;
    assert_int_equal(imgstore_store_file_read(f->store, m, "a.bin", len + 1, 1, mem_write, &out),
                     IMGSTORE_EINVALID);
    imgstore_manifest_free(m);
    free(out.buf);
    free(bytes);
}

static void push_same_version_other_bytes_is_refused(void **state)
{
    fixture *f = *state;
    uint8_t *a = pseudo_random(1000, 3), *b = pseudo_random(1000, 4);
    imgstore_manifest *m = NULL;
    bool created;

    assert_int_equal(push_bytes(&m, &created, f->store, "app", "1.0", "x", a, 1000), 0);
    imgstore_manifest_free(m);
    assert_int_equal(push_bytes(&m, &created, f->store, "app", "1.0", "x", b, 1000),
                     IMGSTORE_EEXISTS);
    assert_non_null(strstr(imgstore_error_last(), "immutable"));
    assert_null(m);
    free(a);
    free(b);
}

static void push_identical_again_is_idempotent(void **state)
{
    fixture *f = *state;
    uint8_t *a = pseudo_random(5000, 5);
    imgstore_manifest *m1 = NULL, *m2 = NULL;
    bool created1 = false, created2 = true;
    git_oid before, after;

    assert_int_equal(push_bytes(&m1, &created1, f->store, "app", NULL, "x", a, 5000), 0);
    assert_int_equal(git_reference_name_to_id(&before, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(push_bytes(&m2, &created2, f->store, "app", NULL, "x", a, 5000), 0);
    assert_int_equal(git_reference_name_to_id(&after, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_true(created1);
    assert_false(created2);
    assert_string_equal(m1->version, m2->version); /* derived from content */
    assert_true(git_oid_equal(&before, &after));
    imgstore_manifest_free(m1);
    imgstore_manifest_free(m2);
    free(a);
}

static void bad_names_are_refused_before_any_byte_is_written(void **state)
{
    fixture *f = *state;
    imgstore_push_opts opts = {.name = "../etc", .signers = TEST_SIGNERS};
    imgstore_push *push = NULL;

    assert_int_equal(imgstore_store_push_begin(&push, f->store, &opts), IMGSTORE_EINVALID);
    opts.name = "app";
    opts.version = "a/b";
    assert_int_equal(imgstore_store_push_begin(&push, f->store, &opts), IMGSTORE_EINVALID);
    opts.version = "1";
    assert_int_equal(imgstore_store_push_begin(&push, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(push, ".hidden", NULL, 0), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_store_push_file_begin(push, "ok.bin", "bogus", 0), IMGSTORE_EINVALID);
    imgstore_store_push_free(push);
}

/* A client that disconnects mid-upload: the push is freed with a file begun but not ended.
 * Nothing may leak (LeakSanitizer in CI) and nothing becomes visible. */
static void push_abandoned_mid_file_frees_everything_and_stores_nothing(void **state)
{
    fixture *f = *state;
    const imgstore_sign_key *keys[1] = {test_key};
    imgstore_push_opts opts = {.name = "app", .version = "1", .signers = {keys, 1}};
    imgstore_push *push = NULL;
    char **versions = NULL;
    size_t count = 0;
    uint8_t *bytes = pseudo_random(300000, 7);

    assert_int_equal(imgstore_store_push_begin(&push, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(push, "first.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(push, bytes, 300000), 0);
    assert_int_equal(imgstore_store_push_file_end(push, NULL), 0);
    assert_int_equal(imgstore_store_push_file_begin(push, "second.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(push, bytes, 1000), 0);
    imgstore_store_push_free(push);
    assert_int_equal(imgstore_store_list_versions(&versions, &count, f->store, "app"),
                     IMGSTORE_ENOTFOUND);
    free(bytes);
}

static void push_version(fixture *f, const char *version, uint64_t seed);

/* The tip id is remembered while the ref file is unchanged; every move must still show. */
static void tip_id_follows_every_move_of_the_ref(void **state)
{
    fixture *f = *state;
    char first[41], second[41], again[41], cmd[1200];
    git_oid old;
    git_reference *ref = NULL;

    assert_int_equal(imgstore_store_tip_id(first, f->store), 0);
    push_version(f, "1", 1);
    assert_int_equal(imgstore_store_tip_id(second, f->store), 0);
    assert_string_not_equal(first, second);
    assert_int_equal(imgstore_store_tip_id(again, f->store), 0);
    assert_string_equal(again, second);
    /* another process (stock git) moves the ref back */
    snprintf(cmd, sizeof(cmd), "git --git-dir='%s' update-ref refs/heads/main %s", f->path, first);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(imgstore_store_tip_id(again, f->store), 0);
    assert_string_equal(again, first);
    /* and libgit2 forward again, in the same second */
    assert_int_equal(git_oid_fromstr(&old, second), 0);
    assert_int_equal(git_reference_create(&ref, f->store->repo, "refs/heads/main", &old, 1, "t"),
                     0);
    git_reference_free(ref);
    assert_int_equal(imgstore_store_tip_id(again, f->store), 0);
    assert_string_equal(again, second);
}

static void push_version(fixture *f, const char *version, uint64_t seed)
{
    uint8_t *a = pseudo_random(2000, seed);
    imgstore_manifest *m = NULL;
    bool created;

    assert_int_equal(push_bytes(&m, &created, f->store, "app", version, "x", a, 2000), 0);
    imgstore_manifest_free(m);
    free(a);
}

static const char *deploy(fixture *f, const char *version)
{
    static char got[64];
    imgstore_channel_opts opts = {.signers = TEST_SIGNERS};
    imgstore_channel_state *s = NULL;

    assert_int_equal(imgstore_store_deploy(&s, f->store, "app", version, "prod", &opts), 0);
    snprintf(got, sizeof(got), "%s", s->version);
    imgstore_channel_state_free(s);
    return got;
}

static const char *rollback(fixture *f, const char *to, int expect)
{
    static char got[64];
    imgstore_channel_opts opts = {
        .actor = "oncall", .reason = "bad", .to_version = to, .signers = TEST_SIGNERS};
    imgstore_channel_state *s = NULL;

    assert_int_equal(imgstore_store_rollback(&s, f->store, "app", "prod", &opts), expect);
    snprintf(got, sizeof(got), "%s", s ? s->version : "");
    imgstore_channel_state_free(s);
    return got;
}

static void rollbacks_walk_back_through_deploys(void **state)
{
    fixture *f = *state;
    imgstore_history_entry *h = NULL;
    size_t count = 0;

    push_version(f, "1", 10);
    push_version(f, "2", 11);
    push_version(f, "3", 12);
    assert_string_equal(deploy(f, "1"), "1");
    assert_string_equal(deploy(f, "2"), "2");
    assert_string_equal(deploy(f, "3"), "3");
    assert_string_equal(rollback(f, NULL, 0), "2");
    assert_string_equal(rollback(f, NULL, 0), "1"); /* again: further back, not back to 3 */
    rollback(f, NULL, IMGSTORE_ENOTFOUND);          /* nothing below 1 */
    assert_string_equal(rollback(f, "3", 0), "3");
    assert_int_equal(imgstore_store_history(&h, &count, f->store, "app", "prod"), 0);
    assert_int_equal(count, 6);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(h[i].state->sequence, count - i); /* newest first, 6..1 */
    assert_string_equal(h[0].action, "rollback");
    imgstore_history_free(h, count);
}

/* Whether a history entry's stored bytes carry a threshold of deploy signatures. */
static bool move_trusted(const imgstore_policy *policy, const imgstore_history_entry *e)
{
    imgstore_trust_status status;

    assert_int_equal(imgstore_trust_signatures_count(
                         &status, policy, IMGSTORE_ROLE_DEPLOY, (const char *const *)e->signatures,
                         e->signature_count, e->state_bytes, e->state_len),
                     0);
    return status.trusted;
}

/* Every move in the history carries the exact bytes stored at that commit and the deploy
 * signatures beside them, so a reader can check each move without trusting whoever served
 * the history. */
static void history_moves_carry_their_signed_bytes(void **state)
{
    fixture *f = *state;
    imgstore_history_entry *h = NULL;
    imgstore_policy *policy = NULL;
    size_t count = 0;

    push_version(f, "1", 10);
    push_version(f, "2", 11);
    deploy(f, "1");
    deploy(f, "2");
    rollback(f, NULL, 0);
    assert_int_equal(imgstore_store_policy_get(&policy, NULL, f->store), 0);
    assert_int_equal(imgstore_store_history(&h, &count, f->store, "app", "prod"), 0);
    assert_int_equal(count, 3);
    for (size_t i = 0; i < count; i++) {
        imgstore_channel_state *parsed = NULL;

        assert_non_null(h[i].state_bytes);
        assert_int_equal(imgstore_schema_channel_parse(&parsed, h[i].state_bytes, h[i].state_len),
                         0);
        assert_int_equal(parsed->sequence, h[i].state->sequence);
        assert_string_equal(parsed->version, h[i].state->version);
        imgstore_channel_state_free(parsed);
        assert_int_equal(h[i].signature_count, 1);
        assert_true(move_trusted(policy, &h[i]));
        /* one byte of the stored state changed: its signature no longer counts */
        h[i].state_bytes[h[i].state_len / 2] ^= 1;
        assert_false(move_trusted(policy, &h[i]));
    }
    imgstore_history_free(h, count);
    imgstore_policy_free(policy);
}

/* The rollback stack on hand-made states, newest first, as a remote client replays them. */
static void rollback_target_replays_the_stack(void **state)
{
    static const struct {
        const char *moves;  /* oldest first: dV = deploy V, rV = rollback to V */
        const char *target; /* "" = none */
    } cases[] = {
        {"", ""},
        {"d1", ""},
        {"d1 d2", "1"},
        {"d1 d2 d3 r2", "1"},
        {"d1 d2 d3 r2 d4", "2"},
        {"d1 d2 r1", ""},
        {"d1 d2 r5", "2"},
        {"d1 d2 d3 r1 d2", "1"},
        {"d1 d1 d2", "1"},
    };
    (void)state;

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        imgstore_channel_state moves[8], *newest_first[8];
        char versions[8][8];
        const char *target = (const char *)1;
        size_t count = 0;

        char buf[64];

        snprintf(buf, sizeof(buf), "%s", cases[c].moves);
        for (char *move = strtok(buf, " "); move; move = strtok(NULL, " "), count++) {
            memset(&moves[count], 0, sizeof(moves[count]));
            snprintf(versions[count], sizeof(versions[count]), "%s", move + 1);
            moves[count].version = versions[count];
            moves[count].action = move[0] == 'd' ? "deploy" : "rollback";
            moves[count].sequence = count + 1;
        }
        for (size_t i = 0; i < count; i++)
            newest_first[i] = &moves[count - 1 - i];
        assert_int_equal(imgstore_trust_rollback_target(
                             &target, (const imgstore_channel_state *const *)newest_first, count),
                         0);
        if (!*cases[c].target)
            assert_null(target);
        else
            assert_string_equal(target, cases[c].target);
    }
}

static void deploy_of_missing_version_is_refused(void **state)
{
    fixture *f = *state;
    imgstore_channel_opts opts = {.signers = TEST_SIGNERS};
    imgstore_channel_state *s = NULL;

    assert_int_equal(imgstore_store_deploy(&s, f->store, "app", "9.9", "prod", &opts),
                     IMGSTORE_ENOTFOUND);
    assert_null(s);
}

/* Overwrite one chunk's loose object with a valid object of other bytes under the same name,
 * as disk corruption or tampering would. */
static void damaged_chunk_is_never_handed_out(void **state)
{
    fixture *f = *state;
    char rev[600];
    size_t len = 3 * 1024 * 1024;
    uint8_t *bytes = pseudo_random(len, 6);
    imgstore_manifest *m = NULL;
    membuf out = {malloc(len), 0, len};
    git_object *blob = NULL;
    git_odb *odb = NULL;
    git_oid other;
    char hex[GIT_OID_HEXSZ + 1], from[1200], to[1200];
    bool created;

    assert_int_equal(push_bytes(&m, &created, f->store, "app", "1", "x", bytes, len), 0);
    assert_int_equal(git_revparse_single(&blob, f->store->repo,
                                         version_rev(rev, f, "app", "1", "files/x/000000")),
                     0);
    bytes[17] ^= 1;
    assert_int_equal(git_repository_odb(&odb, f->store->repo), 0);
    assert_int_equal(git_odb_write(&other, odb, bytes, m->files[0].chunks[0].size, GIT_OBJECT_BLOB),
                     0);
    git_oid_tostr(hex, sizeof(hex), &other);
    snprintf(from, sizeof(from), "%s/objects/%.2s/%s", f->path, hex, hex + 2);
    git_oid_tostr(hex, sizeof(hex), git_object_id(blob));
    snprintf(to, sizeof(to), "%s/objects/%.2s/%s", f->path, hex, hex + 2);
    assert_int_equal(rename(from, to), 0);

    assert_int_equal(imgstore_store_file_read(f->store, m, "x", 0, UINT64_MAX, mem_write, &out),
                     IMGSTORE_EVERIFY);
    assert_int_equal(out.len, 0); /* not one byte of the damaged chunk */
    assert_non_null(strstr(imgstore_error_last(), "damaged"));
    assert_int_equal(imgstore_store_verify(f->store, NULL, NULL, NULL, NULL), IMGSTORE_EVERIFY);
    git_odb_free(odb);
    git_object_free(blob);
    imgstore_manifest_free(m);
    free(out.buf);
    free(bytes);
}

/* Random bytes are written as zlib stored blocks and read by the fast path: a flipped byte in
 * the object file still parses as a stream, so only the SHA-256 check can catch it. */
static void flipped_byte_in_stored_chunk_is_caught(void **state)
{
    fixture *f = *state;
    char rev[600];
    size_t len = 2 * 1024 * 1024;
    uint8_t *bytes = pseudo_random(len, 8);
    imgstore_manifest *m = NULL;
    membuf out = {malloc(len), 0, len};
    git_object *blob = NULL;
    char hex[GIT_OID_HEXSZ + 1], path[1200];
    struct stat st;
    FILE *file;
    int c;
    bool created;

    assert_int_equal(push_bytes(&m, &created, f->store, "app", "1", "x", bytes, len), 0);
    assert_int_equal(git_revparse_single(&blob, f->store->repo,
                                         version_rev(rev, f, "app", "1", "files/x/000000")),
                     0);
    git_oid_tostr(hex, sizeof(hex), git_object_id(blob));
    snprintf(path, sizeof(path), "%s/objects/%.2s/%s", f->path, hex, hex + 2);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(chmod(path, 0644), 0);
    assert_non_null(file = fopen(path, "r+b"));
    fseek(file, st.st_size / 2, SEEK_SET);
    c = fgetc(file);
    fseek(file, st.st_size / 2, SEEK_SET);
    fputc(c ^ 0x40, file);
    fclose(file);

    assert_int_equal(imgstore_store_file_read(f->store, m, "x", 0, UINT64_MAX, mem_write, &out),
                     IMGSTORE_EVERIFY);
    assert_int_equal(out.len, 0);
    git_object_free(blob);
    imgstore_manifest_free(m);
    free(out.buf);
    free(bytes);
}

static void truncate_object(fixture *f, const char *spec)
{
    git_object *object = NULL;
    char hex[GIT_OID_HEXSZ + 1], path[1200];

    assert_int_equal(git_revparse_single(&object, f->store->repo, spec), 0);
    git_oid_tostr(hex, sizeof(hex), git_object_id(object));
    git_object_free(object);
    snprintf(path, sizeof(path), "%s/objects/%.2s/%s", f->path, hex, hex + 2);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(truncate(path, 20), 0);
    /* a new handle, as a new process would have: libgit2 caches objects it has seen */
    imgstore_store_free(f->store);
    assert_int_equal(imgstore_store_open(&f->store, f->path), 0);
}

/* libgit2 1.5 loops forever inflating a truncated loose object; the store must not. */
static void truncated_objects_fail_instead_of_hanging(void **state)
{
    fixture *f = *state;
    char rev[600];
    size_t len = 3 * 1024 * 1024;
    uint8_t *bytes = pseudo_random(len, 9);
    imgstore_manifest *m = NULL, *again = NULL;
    membuf out = {malloc(len), 0, len};
    bool created;

    assert_int_equal(push_bytes(&m, &created, f->store, "app", "1", "x", bytes, len), 0);
    truncate_object(f, version_rev(rev, f, "app", "1", "files/x/000001"));
    assert_int_equal(imgstore_store_file_read(f->store, m, "x", 0, UINT64_MAX, mem_write, &out),
                     IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "damaged"));
    imgstore_manifest_free(m);

    free(bytes);
    bytes = pseudo_random(len, 10); /* no chunk shared with the damaged version 1 */
    assert_int_equal(push_bytes(&m, &created, f->store, "app", "2", "y", bytes, len), 0);
    truncate_object(f, version_rev(rev, f, "app", "2", "files/y"));
    out.len = 0;
    assert_int_equal(imgstore_store_file_read(f->store, m, "y", 0, UINT64_MAX, mem_write, &out),
                     IMGSTORE_EVERIFY);
    assert_int_equal(out.len, 0);
    truncate_object(f, version_rev(rev, f, "app", "2", "manifest.json"));
    assert_int_equal(imgstore_store_manifest_get(&again, NULL, f->store, "app", "2"),
                     IMGSTORE_EVERIFY);
    imgstore_manifest_free(m);
    free(out.buf);
    free(bytes);
}

static void open_refuses_plain_git_repository(void **state)
{
    fixture *f = *state;
    imgstore_store *other = NULL;
    git_repository *repo = NULL;
    char path[600];

    snprintf(path, sizeof(path), "%s/plain.git", f->dir);
    assert_int_equal(git_repository_init(&repo, path, 1), 0);
    git_repository_free(repo);
    assert_int_equal(imgstore_store_open(&other, path), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_store_init(&other, path), IMGSTORE_EEXISTS);
    snprintf(path, sizeof(path), "%s/absent.git", f->dir);
    assert_int_equal(imgstore_store_open(&other, path), IMGSTORE_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(push_then_read_returns_same_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(range_read_crosses_chunk_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(push_same_version_other_bytes_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(push_identical_again_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_names_are_refused_before_any_byte_is_written, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(push_abandoned_mid_file_frees_everything_and_stores_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(tip_id_follows_every_move_of_the_ref, setup, teardown),
        cmocka_unit_test_setup_teardown(rollbacks_walk_back_through_deploys, setup, teardown),
        cmocka_unit_test_setup_teardown(history_moves_carry_their_signed_bytes, setup, teardown),
        cmocka_unit_test(rollback_target_replays_the_stack),
        cmocka_unit_test_setup_teardown(deploy_of_missing_version_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_chunk_is_never_handed_out, setup, teardown),
        cmocka_unit_test_setup_teardown(flipped_byte_in_stored_chunk_is_caught, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_objects_fail_instead_of_hanging, setup, teardown),
        cmocka_unit_test_setup_teardown(open_refuses_plain_git_repository, setup, teardown),
    };

    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    imgstore_sign_key_free(test_key);
    return failed;
}
