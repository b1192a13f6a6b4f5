/*
 * The agent's swap state machine against fake ops (a channel in memory, files written by
 * the fake pull, hooks and health decided per version): deploy, failed health and the way
 * back, the signed rollback asked once, reports, sequence replay, a failed pull, pruning,
 * and a kill at every step of a swap followed by a restart that must end consistent.
 */
#include "agent/agent.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define SHA_E "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define MAX_V 8

typedef struct {
    /* the channel */
    char versions[MAX_V][16]; /* version of each move, index = sequence - 1 */
    uint64_t live;            /* live sequence; 0: no channel */
    bool unhealthy[MAX_V];    /* by move index */
    bool server_down;
    bool deploy_right;
    bool disk_full;
    /* what happened */
    int pulls, rollbacks_posted, rollbacks_applied, reports, restarts;
    char last_report_state[32], last_report_attempted[32], last_reason[128];
    char last_env_kernel[512], last_env_cmdline[256];
    volatile sig_atomic_t stop_flag; /* SIGTERM, as the CLI's handler sets it */
    bool stop_in_health;             /* the health check is interrupted by a stop */
    /* kill -9 at checkpoint number `stop_at` (0: never) */
    int checkpoints, stop_at;
    char stopped_at[32];
    char dir[256];
} fake;

static fake F;

static char *version_of_health(const char *version, bool *unhealthy)
{
    *unhealthy = false;
    for (uint64_t i = 0; i < F.live; i++)
        if (strcmp(F.versions[i], version) == 0)
            *unhealthy = F.unhealthy[i];
    return NULL;
}

static imgstore_agent_target *make_target(uint64_t sequence)
{
    const char *version = F.versions[sequence - 1];
    imgstore_manifest_file files[3] = {
        {.path = "cmdline.txt", .sha256 = SHA_E},
        {.path = "initrd.img", .sha256 = SHA_E},
        {.path = "vmlinuz", .sha256 = SHA_E},
    };
    imgstore_manifest m = {0};
    imgstore_channel_state st = {0};
    imgstore_agent_target *t = calloc(1, sizeof(*t));
    char *bytes = NULL;
    size_t len = 0;

    strcpy(files[0].info.kind, "cmdline");
    strcpy(files[1].info.kind, "initrd");
    strcpy(files[2].info.kind, "kernel");
    for (size_t i = 0; i < 3; i++)
        strcpy(files[i].info.format, "raw");
    m.name = "app";
    m.version = (char *)version;
    m.created = "2026-12-01T00:00:00Z";
    m.builder = "test";
    m.file_count = 3;
    m.files = files;
    m.boot.kernel = "vmlinuz";
    m.boot.initrd = "initrd.img";
    m.boot.cmdline = "cmdline.txt";
    m.boot.complete = true;
    if (imgstore_schema_manifest_encode(&t->manifest_bytes, &t->manifest_len, &m) < 0)
        fail_msg("%s", imgstore_error_last());
    assert_int_equal(
        imgstore_schema_manifest_parse(&t->manifest, t->manifest_bytes, t->manifest_len), 0);
    st.name = "app";
    st.channel = "prod";
    st.version = (char *)version;
    memcpy(st.manifest_sha256, SHA_E, 65);
    st.sequence = sequence;
    st.time = "2026-12-01T00:00:00Z";
    st.actor = "ops";
    st.action = "deploy";
    assert_int_equal(imgstore_schema_channel_encode(&bytes, &len, &st), 0);
    assert_int_equal(imgstore_schema_channel_parse(&t->state, bytes, len), 0);
    free(bytes);
    return t;
}

static int fake_wait(imgstore_agent_target **out, uint64_t after, unsigned wait, void *payload)
{
    (void)wait;
    (void)payload;
    *out = NULL;
    if (F.server_down)
        return imgstore_error_set(IMGSTORE_ERROR, "connection refused");
    if (F.live == 0)
        return IMGSTORE_ENOTFOUND;
    if (F.live > after)
        *out = make_target(F.live);
    return 0;
}

static int fake_pull(const imgstore_agent_target *t, const imgstore_manifest_file *file,
                     const char *path, void *payload)
{
    FILE *f;

    (void)payload;
    F.pulls++;
    if (F.disk_full)
        return imgstore_error_set(IMGSTORE_ERROR, "write %s: No space left on device", path);
    assert_non_null(f = fopen(path, "w"));
    if (strcmp(file->path, "cmdline.txt") == 0)
        fprintf(f, "console=ttyS0 app=%s\n", t->state->version);
    else
        fprintf(f, "%s of %s\n", file->path, t->state->version);
    fclose(f);
    return 0;
}

static int fake_rollback(const char *failed, uint64_t failed_sequence, const char *to,
                         const char *reason, void *payload)
{
    (void)payload;
    F.rollbacks_posted++;
    if (!F.deploy_right)
        return IMGSTORE_ENOTFOUND;
    snprintf(F.last_reason, sizeof(F.last_reason), "%s", reason);
    if (F.live != failed_sequence || strcmp(F.versions[F.live - 1], failed) != 0)
        return 0; /* moved already: the real op does nothing either */
    snprintf(F.versions[F.live], sizeof(F.versions[0]), "%s", to);
    F.live++;
    F.rollbacks_applied++;
    return 0;
}

static int fake_report(const imgstore_agent_report *r, void *payload)
{
    (void)payload;
    F.reports++;
    snprintf(F.last_report_state, sizeof(F.last_report_state), "%s", r->state);
    snprintf(F.last_report_attempted, sizeof(F.last_report_attempted), "%s",
             r->attempted ? r->attempted : "");
    return 0;
}

static const char *env_get(char *const *env, const char *key)
{
    size_t n = strlen(key);

    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], key, n) == 0 && env[i][n] == '=')
            return env[i] + n + 1;
    return NULL;
}

static int fake_run(const char *command, char *const *env, unsigned timeout, void *payload)
{
    const char *kernel = env_get(env, "IMGSTORE_KERNEL");
    const char *cmdline = env_get(env, "IMGSTORE_CMDLINE");

    (void)command;
    (void)timeout;
    (void)payload;
    F.restarts++;
    snprintf(F.last_env_kernel, sizeof(F.last_env_kernel), "%s", kernel ? kernel : "");
    snprintf(F.last_env_cmdline, sizeof(F.last_env_cmdline), "%s", cmdline ? cmdline : "");
    return 0;
}

static int fake_health(const char *check, char *const *env, unsigned timeout, void *payload)
{
    bool unhealthy;

    (void)check;
    (void)timeout;
    (void)payload;
    version_of_health(env_get(env, "IMGSTORE_VERSION"), &unhealthy);
    if (F.stop_in_health) {
        F.stop_flag = 1;
        return imgstore_error_set(IMGSTORE_ERROR, "not yet");
    }
    return unhealthy ? imgstore_error_set(IMGSTORE_ERROR, "exit 1") : 0;
}

static void fake_sleep(unsigned seconds, void *payload)
{
    (void)seconds;
    (void)payload;
}

static int fake_checkpoint(const char *step, void *payload)
{
    (void)payload;
    if (F.stop_at && ++F.checkpoints == F.stop_at) {
        snprintf(F.stopped_at, sizeof(F.stopped_at), "%s", step);
        return 1;
    }
    return 0;
}

static const imgstore_agent_ops OPS = {fake_wait,   fake_pull,       fake_rollback,
                                       fake_report, fake_run,        fake_health,
                                       fake_sleep,  fake_checkpoint, NULL};

static void fresh(void)
{
    /* tmpfs when there is one: the agent fsyncs every step, which is the point but slow */
    const char *tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("IMGSTORE_TEST_TMP");
    char cmd[600];

    memset(&F, 0, sizeof(F));
    snprintf(F.dir, sizeof(F.dir), "%s/agent-%d-XXXXXX", tmp ? tmp : "/tmp", (int)getpid());
    assert_non_null(mkdtemp(F.dir));
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'/*", F.dir);
    assert_int_equal(system(cmd), 0);
    F.deploy_right = true;
}

static void cleanup(void)
{
    char cmd[600];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
    assert_int_equal(system(cmd), 0);
}

static imgstore_agent *open_agent(unsigned keep)
{
    imgstore_agent_config config = {.dir = F.dir,
                                    .image = "app",
                                    .channel = "prod",
                                    .host = "h1",
                                    .restart = "restart-vm",
                                    .health = "check-vm",
                                    .health_timeout = 5,
                                    .keep = keep,
                                    .stop = &F.stop_flag};
    imgstore_agent *agent = NULL;

    assert_int_equal(imgstore_agent_open(&agent, &config, &OPS), 0);
    return agent;
}

static void deploy(const char *version, bool unhealthy)
{
    snprintf(F.versions[F.live], sizeof(F.versions[0]), "%s", version);
    F.unhealthy[F.live] = unhealthy;
    F.live++;
}

/* Where a link points ("" when absent), and that it is a whole version. */
static const char *link_of(const char *link)
{
    static char target[2][256];
    static int turn;
    char path[512], *t = target[turn ^= 1];
    ssize_t n;
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", F.dir, link);
    n = readlink(path, t, 255);
    if (n < 0)
        return "";
    t[n] = '\0';
    snprintf(path, sizeof(path), "%s/%s/.manifest.json", F.dir, t);
    assert_int_equal(stat(path, &st), 0); /* never a link to a partial version */
    return t + strlen("versions/");
}

static bool exists(const char *rel)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", F.dir, rel);
    return lstat(path, &st) == 0;
}

static void deploy_swaps_and_commits(void **state)
{
    imgstore_agent *agent;

    (void)state;
    fresh();
    deploy("1.0", false);
    agent = open_agent(3);
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_string_equal(link_of("current"), "1.0");
    assert_string_equal(F.last_report_state, "ok");
    deploy("2.0", false);
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_string_equal(link_of("current"), "2.0");
    assert_string_equal(link_of("previous"), "1.0");
    assert_string_equal(imgstore_agent_current(agent), "2.0");
    /* the restart hook sees the version's boot set */
    assert_non_null(strstr(F.last_env_kernel, "/versions/2.0/vmlinuz"));
    assert_string_equal(F.last_env_cmdline, "console=ttyS0 app=2.0");
    /* nothing moved: nothing pulled again */
    F.pulls = 0;
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_int_equal(F.pulls, 0);
    imgstore_agent_free(agent);
    cleanup();
}

static void failed_health_goes_back_and_rolls_the_channel_back(void **state)
{
    imgstore_agent *agent;
    json_t *status = NULL;

    (void)state;
    fresh();
    deploy("1.0", false);
    agent = open_agent(3);
    assert_int_equal(imgstore_agent_step(agent), 0);
    deploy("2.0", true);
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_string_equal(link_of("current"), "1.0");
    assert_non_null(strstr(F.last_env_kernel, "/versions/1.0/vmlinuz"));
    assert_int_equal(F.rollbacks_applied, 1);
    assert_string_equal(F.last_reason, "agent h1: health check failed on 2.0");
    assert_string_equal(F.versions[F.live - 1], "1.0");
    assert_string_equal(F.last_report_state, "rolled-back");
    assert_string_equal(F.last_report_attempted, "2.0");
    assert_int_equal(imgstore_agent_status(&status, F.dir), 0);
    assert_string_equal(json_string_value(json_object_get(status, "phase")), "running");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(status, "failed"), "version")), "2.0");
    json_decref(status);
    imgstore_agent_free(agent);
    cleanup();
}

static void without_deploy_right_reports_and_does_not_retry(void **state)
{
    imgstore_agent *agent;

    (void)state;
    fresh();
    F.deploy_right = false;
    deploy("1.0", false);
    agent = open_agent(3);
    assert_int_equal(imgstore_agent_step(agent), 0);
    deploy("2.0", true);
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_string_equal(link_of("current"), "1.0");
    assert_int_equal(F.rollbacks_applied, 0);
    assert_string_equal(F.last_report_state, "rolled-back");
    /* the channel still says 2.0 at the same move: it is not pulled and tried again */
    F.pulls = F.restarts = 0;
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_int_equal(F.pulls + F.restarts, 0);
    assert_string_equal(link_of("current"), "1.0");
    /* a new move to a fixed version is */
    deploy("2.1", false);
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_string_equal(link_of("current"), "2.1");
    imgstore_agent_free(agent);
    cleanup();
}

static void an_older_move_is_refused(void **state)
{
    imgstore_agent *agent;
    imgstore_agent_target *old;

    (void)state;
    fresh();
    deploy("1.0", false);
    deploy("2.0", false);
    agent = open_agent(3);
    assert_int_equal(imgstore_agent_step(agent), 0);
    old = make_target(1);
    assert_int_equal(imgstore_agent_apply(agent, old), IMGSTORE_EVERIFY);
    assert_string_equal(link_of("current"), "2.0");
    imgstore_agent_target_free(old);
    imgstore_agent_free(agent);
    cleanup();
}

static void a_failed_pull_keeps_the_old_version_running(void **state)
{
    imgstore_agent *agent;

    (void)state;
    fresh();
    deploy("1.0", false);
    agent = open_agent(3);
    assert_int_equal(imgstore_agent_step(agent), 0);
    deploy("2.0", false);
    F.disk_full = true;
    assert_int_equal(imgstore_agent_step(agent), IMGSTORE_ERROR);
    assert_string_equal(link_of("current"), "1.0");
    assert_false(exists("versions/2.0"));
    assert_string_equal(F.last_report_state, "failed");
    /* the disk freed: the same move is pulled on the next round */
    F.disk_full = false;
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_string_equal(link_of("current"), "2.0");
    imgstore_agent_free(agent);
    cleanup();
}

static void the_server_away_is_caught_up_with(void **state)
{
    imgstore_agent *agent;

    (void)state;
    fresh();
    deploy("1.0", false);
    agent = open_agent(3);
    assert_int_equal(imgstore_agent_step(agent), 0);
    F.server_down = true;
    deploy("2.0", false);
    deploy("3.0", false);
    assert_int_equal(imgstore_agent_step(agent), IMGSTORE_ERROR);
    assert_string_equal(link_of("current"), "1.0");
    F.server_down = false;
    assert_int_equal(imgstore_agent_step(agent), 0);
    assert_string_equal(link_of("current"), "3.0");
    imgstore_agent_free(agent);
    cleanup();
}

static void a_stop_during_the_health_check_is_not_a_failure(void **state)
{
    imgstore_agent *agent;
    json_t *status = NULL;

    (void)state;
    fresh();
    deploy("1.0", false);
    agent = open_agent(3);
    assert_int_equal(imgstore_agent_step(agent), 0);
    deploy("2.0", false);
    F.stop_in_health = true;
    assert_int_equal(imgstore_agent_step(agent), IMGSTORE_ERROR);
    imgstore_agent_free(agent);
    assert_int_equal(F.rollbacks_posted, 0);
    assert_string_equal(link_of("current"), "2.0");
    assert_int_equal(imgstore_agent_status(&status, F.dir), 0);
    assert_string_equal(json_string_value(json_object_get(status, "phase")), "checking");
    json_decref(status);
    /* the next start checks 2.0 again and keeps it */
    F.stop_in_health = false;
    F.stop_flag = 0;
    agent = open_agent(3);
    assert_string_equal(imgstore_agent_current(agent), "2.0");
    assert_string_equal(link_of("previous"), "1.0");
    assert_int_equal(F.rollbacks_posted, 0);
    imgstore_agent_free(agent);
    cleanup();
}

static void keep_removes_the_oldest_but_never_current_or_previous(void **state)
{
    imgstore_agent *agent;
    const char *names[] = {"1.0", "2.0", "3.0", "4.0", "5.0"};

    (void)state;
    fresh();
    agent = open_agent(1);
    for (size_t i = 0; i < 5; i++) {
        deploy(names[i], false);
        assert_int_equal(imgstore_agent_step(agent), 0);
    }
    assert_string_equal(link_of("current"), "5.0");
    assert_string_equal(link_of("previous"), "4.0");
    assert_true(exists("versions/3.0"));
    assert_false(exists("versions/2.0"));
    assert_false(exists("versions/1.0"));
    imgstore_agent_free(agent);
    cleanup();
}

static void a_second_agent_on_the_directory_is_refused(void **state)
{
    imgstore_agent_config config = {.dir = NULL, .image = "app", .channel = "prod", .host = "h1"};
    imgstore_agent *agent, *second = NULL;

    (void)state;
    fresh();
    agent = open_agent(3);
    config.dir = F.dir;
    assert_int_equal(imgstore_agent_open(&second, &config, &OPS), IMGSTORE_ELOCKED);
    assert_null(second);
    imgstore_agent_free(agent);
    cleanup();
}

/* Kill at checkpoint n of a deploy of 2.0 over 1.0, restart, run a round: the host ends on
 * 2.0 (healthy) or 1.0 with the channel rolled back exactly once (unhealthy), and at the kill
 * every link pointed at a whole version. */
static void kill_at_every_step(bool unhealthy)
{
    int n, last = 0;

    for (n = 1; n < 64; n++) {
        imgstore_agent *agent;
        json_t *status = NULL;
        bool had_trial;
        int err;

        fresh();
        deploy("1.0", false);
        agent = open_agent(3);
        assert_int_equal(imgstore_agent_step(agent), 0);
        deploy("2.0", unhealthy);
        F.stop_at = n;
        F.checkpoints = 0;
        err = imgstore_agent_step(agent);
        imgstore_agent_free(agent);
        if (F.stopped_at[0] == '\0') {
            assert_int_equal(err, 0); /* ran to the end: every step was killed at once */
            last = n;
            cleanup();
            break;
        }
        /* at the kill: whatever the links say is a whole version */
        link_of("current");
        link_of("previous");
        F.stop_at = 0;
        assert_int_equal(imgstore_agent_status(&status, F.dir), 0);
        had_trial = json_is_object(json_object_get(status, "trial"));
        json_decref(status);
        /* the restart finishes a swap whose trial was written, before asking the server */
        F.server_down = had_trial;
        agent = open_agent(3);
        F.server_down = false;
        if (had_trial)
            assert_string_equal(link_of("current"), unhealthy ? "1.0" : "2.0");
        assert_int_equal(imgstore_agent_step(agent), 0);
        if (unhealthy) {
            assert_string_equal(link_of("current"), "1.0");
            assert_int_equal(F.rollbacks_applied, 1);
            assert_string_equal(F.versions[F.live - 1], "1.0");
        } else {
            assert_string_equal(link_of("current"), "2.0");
            assert_string_equal(link_of("previous"), "1.0");
        }
        imgstore_agent_free(agent);
        cleanup();
    }
    assert_true(last > 5); /* the swap has steps, and each was killed once */
}

static void kill_at_every_step_of_a_healthy_swap(void **state)
{
    (void)state;
    kill_at_every_step(false);
}

static void kill_at_every_step_of_a_failed_swap(void **state)
{
    (void)state;
    kill_at_every_step(true);
}

static void run_command_passes_env_and_kills_at_the_timeout(void **state)
{
    char *env[] = {"IMGSTORE_VERSION=9.9", NULL};
    time_t started;

    (void)state;
    assert_int_equal(imgstore_agent_run_command("test \"$IMGSTORE_VERSION\" = 9.9", env, 5, NULL),
                     0);
    assert_int_equal(imgstore_agent_run_command("exit 3", env, 5, NULL), IMGSTORE_ERROR);
    assert_non_null(strstr(imgstore_error_last(), "exited with 3"));
    started = time(NULL);
    assert_int_equal(imgstore_agent_run_command("sleep 30", env, 1, NULL), IMGSTORE_ERROR);
    assert_true(time(NULL) - started < 5);
    assert_non_null(strstr(imgstore_error_last(), "killed"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deploy_swaps_and_commits),
        cmocka_unit_test(failed_health_goes_back_and_rolls_the_channel_back),
        cmocka_unit_test(without_deploy_right_reports_and_does_not_retry),
        cmocka_unit_test(an_older_move_is_refused),
        cmocka_unit_test(a_failed_pull_keeps_the_old_version_running),
        cmocka_unit_test(the_server_away_is_caught_up_with),
        cmocka_unit_test(a_stop_during_the_health_check_is_not_a_failure),
        cmocka_unit_test(keep_removes_the_oldest_but_never_current_or_previous),
        cmocka_unit_test(a_second_agent_on_the_directory_is_refused),
        cmocka_unit_test(kill_at_every_step_of_a_healthy_swap),
        cmocka_unit_test(kill_at_every_step_of_a_failed_swap),
        cmocka_unit_test(run_command_passes_env_and_kills_at_the_timeout),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
