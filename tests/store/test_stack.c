/*
 * The rollback stack a channel state carries (store/stack.c, docs/format.md): the
 * derivation on hand-made moves, the cap, and the property that matters: on random
 * deploys, rollbacks and rollbacks to a version, every state the store writes carries
 * exactly the stack a replay of the channel's whole history gives, so the O(1) path and the
 * history walk can never disagree. A legacy state (no stack) is moved by one replay.
 */
#include "trust_test_util.h"

#include <time.h>

#define VERSIONS 5

static const char *const versions[VERSIONS] = {"1", "2", "3", "4", "5"};

static void push(fixture *f, const char *version)
{
    const imgstore_sign_key *keys[1] = {f->root};
    imgstore_push_opts opts = {.name = "app", .version = version, .signers = {keys, 1}};
    imgstore_manifest *m = NULL;
    imgstore_push *p = NULL;
    bool created;
    char bytes[3000];

    memset(bytes, version[0], sizeof(bytes));
    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.img", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, bytes, sizeof(bytes)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(p, &m, &created), 0);
    imgstore_manifest_free(m);
    imgstore_store_push_free(p);
}

/* "1 2 3" into an array of up to IMGSTORE_CHANNEL_STACK_MAX + 1 pointers into `buf`. */
static size_t split(const char **out, char *buf)
{
    size_t n = 0;

    for (char *word = strtok(buf, " "); word; word = strtok(NULL, " "))
        out[n++] = word;
    return n;
}

static void assert_stack(const char *const *got, size_t count, const char *expected)
{
    char buf[512] = "";
    size_t used = 0;

    for (size_t i = 0; i < count; i++)
        used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s", i ? " " : "", got[i]);
    assert_string_equal(buf, expected);
}

/* The table of docs/format.md, one row at a time. */
static void next_follows_the_table(void **state)
{
    static const struct {
        const char *current, *below, *action, *version, *expected;
    } cases[] = {
        {NULL, "", "deploy", "1", ""},          /* a new channel */
        {NULL, "", "rollback", "1", ""},        /* a first state a client called a rollback */
        {"2", "1", "deploy", "3", "2 1"},       /* deploy pushes the version left */
        {"2", "1", "deploy", "2", "1"},         /* a refresh pushes nothing */
        {"3", "2 1", "rollback", "2", "1"},     /* the default rollback: stack[0] */
        {"3", "2 1", "rollback", "1", ""},      /* pops down to its target */
        {"3", "2 1 2", "rollback", "2", "1 2"}, /* the nearest copy */
        {"3", "2 1", "rollback", "9", "3 2 1"}, /* never below: pushed like a deploy */
        {"3", "2 1", "rollback", "3", "2 1"},   /* to the live version: nothing moves */
        {"1", "", "rollback", "2", "1"},        /* an empty stack */
    };
    (void)state;

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        const char *below[IMGSTORE_CHANNEL_STACK_MAX + 1], *out[IMGSTORE_CHANNEL_STACK_MAX];
        char buf[128];
        size_t below_count, count = 99;

        snprintf(buf, sizeof(buf), "%s", cases[c].below);
        below_count = split(below, buf);
        assert_int_equal(imgstore_trust_stack_next(out, &count, cases[c].current, below,
                                                   below_count, cases[c].action, cases[c].version),
                         0);
        assert_stack(out, count, cases[c].expected);
        /* in place, as the replay runs it */
        assert_int_equal(imgstore_trust_stack_next(below, &count, cases[c].current, below,
                                                   below_count, cases[c].action, cases[c].version),
                         0);
        assert_stack(below, count, cases[c].expected);
    }
}

static void next_refuses_bad_arguments(void **state)
{
    const char *below[1] = {"1"}, *out[IMGSTORE_CHANNEL_STACK_MAX];
    size_t count;

    (void)state;
    assert_int_equal(imgstore_trust_stack_next(out, &count, "2", below, 1, "push", "3"),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_trust_stack_next(out, &count, NULL, below, 1, "deploy", "3"),
                     IMGSTORE_EINVALID);
    assert_int_equal(imgstore_trust_stack_next(out, &count, "2", below,
                                               IMGSTORE_CHANNEL_STACK_MAX + 1, "deploy", "3"),
                     IMGSTORE_EINVALID);
}

/* Past 32 versions below, the oldest falls off; the replay keeps the same cap, so a rollback
 * to a version that fell off is pushed, in both. */
static void stack_is_capped_and_the_replay_agrees(void **state)
{
    imgstore_channel_state moves[IMGSTORE_CHANNEL_STACK_MAX + 3];
    const imgstore_channel_state *newest_first[IMGSTORE_CHANNEL_STACK_MAX + 3];
    char names[IMGSTORE_CHANNEL_STACK_MAX + 3][8];
    const char *stack[IMGSTORE_CHANNEL_STACK_MAX], *target = NULL;
    size_t n = IMGSTORE_CHANNEL_STACK_MAX + 2, depth = 0;

    (void)state;
    /* deploys of v0 .. v33, then a rollback to v0, which fell off the bottom */
    for (size_t i = 0; i < n + 1; i++) {
        memset(&moves[i], 0, sizeof(moves[i]));
        snprintf(names[i], sizeof(names[i]), "v%zu", i < n ? i : 0);
        moves[i].version = names[i];
        moves[i].action = i < n ? "deploy" : "rollback";
        moves[i].sequence = i + 1;
    }
    for (size_t i = 0; i < n; i++)
        newest_first[i] = &moves[n - 1 - i];
    assert_int_equal(imgstore_trust_stack_replay(stack, &depth, newest_first, n), 0);
    assert_int_equal(depth, IMGSTORE_CHANNEL_STACK_MAX);
    assert_string_equal(stack[0], "v32");
    assert_string_equal(stack[IMGSTORE_CHANNEL_STACK_MAX - 1], "v1"); /* v0 fell off */
    for (size_t i = 0; i < n + 1; i++)
        newest_first[i] = &moves[n - i];
    assert_int_equal(imgstore_trust_stack_replay(stack, &depth, newest_first, n + 1), 0);
    assert_int_equal(depth, IMGSTORE_CHANNEL_STACK_MAX);
    assert_string_equal(stack[0], "v33"); /* pushed, not popped down to */
    assert_int_equal(imgstore_trust_rollback_target(&target, newest_first, n + 1), 0);
    assert_string_equal(target, "v33");
}

/* The stack replayed from the channel's history, compared with the one the tip carries. */
static void assert_state_matches_replay(fixture *f, uint64_t seed, size_t op)
{
    imgstore_history_entry *h = NULL;
    imgstore_channel_state *current = NULL;
    const imgstore_channel_state **states;
    const char *replayed[IMGSTORE_CHANNEL_STACK_MAX];
    size_t count = 0, depth = 0;

    assert_int_equal(imgstore_store_channel_get(&current, f->store, "app", "prod"), 0);
    assert_int_equal(imgstore_store_history(&h, &count, f->store, "app", "prod"), 0);
    states = calloc(count, sizeof(*states));
    assert_non_null(states);
    for (size_t i = 0; i < count; i++)
        states[i] = h[i].state;
    assert_int_equal(imgstore_trust_stack_replay(replayed, &depth, states, count), 0);
    if (!current->has_stack || current->stack_count != depth)
        fail_msg("seed %llu, op %zu: the state carries %zu versions, the replay %zu",
                 (unsigned long long)seed, op, current->has_stack ? current->stack_count : 0,
                 depth);
    for (size_t i = 0; i < depth; i++) {
        if (strcmp(current->stack[i], replayed[i]) != 0)
            fail_msg("seed %llu, op %zu: stack[%zu] is %s, the replay says %s",
                     (unsigned long long)seed, op, i, current->stack[i], replayed[i]);
    }
    free(states);
    imgstore_history_free(h, count);
    imgstore_channel_state_free(current);
}

static uint64_t next_random(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Random moves over a few versions, enough deploys to pass the cap; after every one the
 * state's stack equals the replay over the history (IMGSTORE_TEST_SEED repeats a run). */
static void carried_stack_equals_the_history_replay(void **state)
{
    fixture *f = *state;
    const imgstore_sign_key *keys[1] = {f->root};
    const char *env = getenv("IMGSTORE_TEST_SEED");
    uint64_t seed = env && *env ? strtoull(env, NULL, 10) : (uint64_t)time(NULL);
    uint64_t x = seed | 1;
    char live[16] = "";

    print_message("seed %llu\n", (unsigned long long)seed);
    for (size_t v = 0; v < VERSIONS; v++)
        push(f, versions[v]);
    for (size_t op = 0; op < 160; op++) {
        imgstore_channel_opts opts = {.actor = "test", .reason = "r", .signers = {keys, 1}};
        imgstore_channel_state *before = NULL, *after = NULL;
        unsigned dice = (unsigned)(next_random(&x) % 100);
        const char *version = versions[next_random(&x) % VERSIONS];
        int err;

        if (*live)
            assert_int_equal(imgstore_store_channel_get(&before, f->store, "app", "prod"), 0);
        if (!*live || dice < 55) {
            if (before && strcmp(before->version, version) == 0) {
                imgstore_channel_state_free(before);
                continue; /* a no-op: nothing written */
            }
            err = imgstore_store_deploy(&after, f->store, "app", version, "prod", &opts);
            assert_int_equal(err, 0);
            assert_string_equal(after->version, version);
        } else if (dice < 80) {
            err = imgstore_store_rollback(&after, f->store, "app", "prod", &opts);
            if (before->stack_count == 0) {
                assert_int_equal(err, IMGSTORE_ENOTFOUND);
            } else {
                assert_int_equal(err, 0);
                assert_string_equal(after->version, before->stack[0]);
            }
        } else {
            opts.to_version = version;
            err = imgstore_store_rollback(&after, f->store, "app", "prod", &opts);
            assert_int_equal(err, strcmp(version, before->version) == 0 ? IMGSTORE_EINVALID : 0);
        }
        if (after)
            snprintf(live, sizeof(live), "%s", after->version);
        imgstore_channel_state_free(after);
        imgstore_channel_state_free(before);
        assert_state_matches_replay(f, seed, op);
    }
}

/* A state without a stack (as older imgstore wrote them), committed by hand. */
static void put_legacy_state(fixture *f, const char *version, const char *action)
{
    imgstore_channel_state *current = NULL, *out = NULL, next;
    imgstore_manifest *m = NULL;
    char digest[65], now[32], expires[32], *bytes = NULL, *sig = NULL;
    const char *sigs[1];
    size_t len = 0;
    int64_t t = (int64_t)time(NULL);

    assert_int_equal(imgstore_store_channel_get(&current, f->store, "app", "prod"), 0);
    assert_int_equal(imgstore_store_manifest_get(&m, digest, f->store, "app", version), 0);
    imgstore_time_rfc3339(now, sizeof(now), t);
    imgstore_time_rfc3339(expires, sizeof(expires), t + 3600);
    next = (imgstore_channel_state){.name = "app",
                                    .channel = "prod",
                                    .version = (char *)version,
                                    .sequence = current->sequence + 1,
                                    .time = now,
                                    .expires = expires,
                                    .actor = "old",
                                    .action = (char *)action,
                                    .previous_version = current->version};
    memcpy(next.manifest_sha256, digest, sizeof(digest));
    assert_int_equal(imgstore_schema_channel_encode(&bytes, &len, &next), 0);
    assert_int_equal(imgstore_sign_sshsig(&sig, f->root, "imgstore", bytes, len), 0);
    sigs[0] = sig;
    assert_int_equal(
        imgstore_store_channel_put_signed(&out, f->store, bytes, len, sigs, 1, NULL, NULL), 0);
    assert_false(out->has_stack);
    imgstore_channel_state_free(out);
    imgstore_manifest_free(m);
    imgstore_channel_state_free(current);
    free(bytes);
    free(sig);
}

/* A legacy state is moved by one replay of the history, and the state written carries its
 * result, so the move after it reads one file again. */
static void legacy_state_is_moved_by_one_replay(void **state)
{
    fixture *f = *state;
    const imgstore_sign_key *keys[1] = {f->root};
    imgstore_channel_opts opts = {.actor = "oncall", .signers = {keys, 1}};
    imgstore_channel_state *s = NULL;

    for (size_t v = 0; v < 4; v++)
        push(f, versions[v]);
    assert_int_equal(imgstore_store_deploy(&s, f->store, "app", "1", "prod", &opts), 0);
    imgstore_channel_state_free(s);
    put_legacy_state(f, "2", "deploy");
    put_legacy_state(f, "3", "deploy");
    put_legacy_state(f, "4", "deploy");
    put_legacy_state(f, "2", "rollback"); /* pops 4 and 3 */
    assert_int_equal(imgstore_store_rollback(&s, f->store, "app", "prod", &opts), 0);
    assert_string_equal(s->version, "1");
    assert_true(s->has_stack);
    assert_int_equal(s->stack_count, 0);
    imgstore_channel_state_free(s);
    assert_state_matches_replay(f, 0, 0);
    put_legacy_state(f, "3", "deploy");
    assert_int_equal(imgstore_store_deploy(&s, f->store, "app", "4", "prod", &opts), 0);
    assert_stack((const char *const *)s->stack, s->stack_count, "3 1");
    imgstore_channel_state_free(s);
    assert_state_matches_replay(f, 0, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(next_follows_the_table),
        cmocka_unit_test(next_refuses_bad_arguments),
        cmocka_unit_test(stack_is_capped_and_the_replay_agrees),
        cmocka_unit_test_setup_teardown(carried_stack_equals_the_history_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(legacy_state_is_moved_by_one_replay, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
