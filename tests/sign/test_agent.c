/*
 * sign/: keys held by ssh-agent. A real `ssh-agent -a SOCK` per test (killed in teardown)
 * holds keys added with ssh-add; signatures made through it must verify with ssh-keygen.
 * Agents that are gone, lack the key or answer nonsense (a forked fake agent) must end in a
 * clean error, never a crash or a signature that does not verify.
 */
#include "sign_test_util.h"

#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>

#define NS "imgstore"

typedef struct {
    char dir[TEST_PATH_MAX];
    char sock[TEST_PATH_MAX];
    pid_t agent_pid;
} agent_fixture;

static bool wait_for_path(const char *path, bool present)
{
    struct stat st;

    for (int i = 0; i < 200; i++) {
        if ((lstat(path, &st) == 0) == present)
            return true;
        usleep(10 * 1000);
    }
    return false;
}

static int agent_setup(void **state)
{
    agent_fixture *fx = calloc(1, sizeof(*fx));
    char cmd[4 * TEST_PATH_MAX];
    char *pid_text;

    if (fx == NULL)
        return -1;
    test_tmp_dir(fx->dir, "agent");
    test_path(fx->sock, fx->dir, "agent.sock");
    snprintf(cmd, sizeof(cmd),
             "ssh-agent -a '%s' -s 2>/dev/null | sed -n 's/^SSH_AGENT_PID=\\([0-9]*\\);.*/\\1/p'",
             fx->sock);
    pid_text = test_capture(cmd);
    fx->agent_pid = (pid_t)atoi(pid_text);
    free(pid_text);
    *state = fx;
    if (fx->agent_pid <= 0 || !wait_for_path(fx->sock, true)) {
        fprintf(stderr, "could not start ssh-agent -a %s\n", fx->sock);
        return -1;
    }
    return 0;
}

static int agent_teardown(void **state)
{
    agent_fixture *fx = *state;

    /* The agent daemonised, so it is not our child: stop it by the pid it reported. */
    if (fx->agent_pid > 0 && kill(fx->agent_pid, SIGTERM) == 0)
        wait_for_path(fx->sock, false);
    free(fx);
    return 0;
}

/* ssh-add the key file at `path` to the fixture's agent. */
static void agent_add(const agent_fixture *fx, const char *path)
{
    assert_int_equal(test_run("SSH_AUTH_SOCK='%s' ssh-add -q '%s' >/dev/null 2>&1", fx->sock, path),
                     0);
}

/* A fresh imgstore key saved as DIR/NAME (unencrypted, so ssh-add reads it). */
static imgstore_sign_key *saved_key(char path[TEST_PATH_MAX], const agent_fixture *fx,
                                    const char *name)
{
    imgstore_sign_key *key = NULL;

    test_path(path, fx->dir, name);
    assert_int_equal(imgstore_sign_key_generate(&key, name), 0);
    assert_int_equal(imgstore_sign_key_save(key, path, NULL), 0);
    return key;
}

static int keygen_verify(const agent_fixture *fx, const imgstore_sign_key *key, const char *sig,
                         const void *msg, size_t len)
{
    char signers[TEST_PATH_MAX], sig_path[TEST_PATH_MAX], msg_path[TEST_PATH_MAX];
    char *line = test_pubkey_line(key);
    char *entry = imgstore_strfmt("ci %s\n", line);
    int rc;

    test_path(signers, fx->dir, "allowed_signers");
    test_path(sig_path, fx->dir, "msg.sig");
    test_path(msg_path, fx->dir, "msg");
    unlink(signers);
    unlink(sig_path);
    unlink(msg_path);
    test_write_file(signers, entry, strlen(entry));
    test_write_file(sig_path, sig, strlen(sig));
    test_write_file(msg_path, msg, len);
    rc = test_run("ssh-keygen -Y verify -f '%s' -I ci -n %s -s '%s' < '%s' >/dev/null 2>&1",
                  signers, NS, sig_path, msg_path);
    free(entry);
    free(line);
    return rc;
}

static void agent_key_signs_sshsig_that_ssh_keygen_verifies(void **state)
{
    agent_fixture *fx = *state;
    static const char msg[] = "{\"name\":\"app\",\"version\":\"2.0.0\"}";
    char path[TEST_PATH_MAX];
    imgstore_sign_key *file_key = saved_key(path, fx, "release@ci");
    imgstore_sign_key *agent_key = NULL;
    imgstore_sign_pubkey pub, signer;
    char *sig = NULL, *file_sig = NULL;

    agent_add(fx, path);
    assert_int_equal(imgstore_sign_key_from_agent(&agent_key, fx->sock, NULL), 0);
    assert_true(test_same_key(agent_key, file_key));
    assert_string_equal(imgstore_sign_key_id(agent_key), imgstore_sign_key_id(file_key));
    imgstore_sign_key_public(&pub, agent_key);
    assert_string_equal(pub.comment, "release@ci");

    assert_int_equal(imgstore_sign_sshsig(&sig, agent_key, NS, msg, strlen(msg)), 0);
    assert_int_equal(keygen_verify(fx, file_key, sig, msg, strlen(msg)), 0);
    assert_int_not_equal(keygen_verify(fx, file_key, sig, msg, strlen(msg) - 1), 0);
    /* Ed25519 is deterministic: the agent signs exactly as the key file does. */
    assert_int_equal(imgstore_sign_sshsig(&file_sig, file_key, NS, msg, strlen(msg)), 0);
    assert_string_equal(sig, file_sig);
    assert_int_equal(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), NS, msg, strlen(msg)),
                     0);
    assert_true(imgstore_sign_pubkey_equal(&signer, &pub));
    free(file_sig);
    free(sig);
    imgstore_sign_key_free(agent_key);
    imgstore_sign_key_free(file_key);
}

static void agent_selects_the_requested_key_among_several(void **state)
{
    agent_fixture *fx = *state;
    char rsa_path[TEST_PATH_MAX], path_a[TEST_PATH_MAX], path_b[TEST_PATH_MAX];
    imgstore_sign_key *key_a = saved_key(path_a, fx, "first");
    imgstore_sign_key *key_b = saved_key(path_b, fx, "second");
    imgstore_sign_key *agent_key = NULL;
    imgstore_sign_pubkey wanted;
    char *sig = NULL;

    /* An RSA key first: the agent lists it, imgstore must skip it. */
    test_keygen(rsa_path, fx->dir, "id_rsa", "-t rsa -b 2048 -N ''");
    agent_add(fx, rsa_path);
    agent_add(fx, path_a);
    agent_add(fx, path_b);

    assert_int_equal(imgstore_sign_key_from_agent(&agent_key, fx->sock, NULL), 0);
    assert_true(test_same_key(agent_key, key_a));
    imgstore_sign_key_free(agent_key);

    imgstore_sign_key_public(&wanted, key_b);
    strcpy(wanted.comment, "a label that is not compared");
    assert_int_equal(imgstore_sign_key_from_agent(&agent_key, fx->sock, &wanted), 0);
    assert_true(test_same_key(agent_key, key_b));
    assert_int_equal(imgstore_sign_sshsig(&sig, agent_key, NS, "x", 1), 0);
    assert_int_equal(keygen_verify(fx, key_b, sig, "x", 1), 0);
    assert_int_not_equal(keygen_verify(fx, key_a, sig, "x", 1), 0);
    free(sig);
    imgstore_sign_key_free(agent_key);
    imgstore_sign_key_free(key_b);
    imgstore_sign_key_free(key_a);
}

static void agent_without_the_requested_key_is_not_found(void **state)
{
    agent_fixture *fx = *state;
    char path[TEST_PATH_MAX];
    imgstore_sign_key *held = saved_key(path, fx, "held");
    imgstore_sign_key *other = NULL, *agent_key = (imgstore_sign_key *)&agent_key;
    imgstore_sign_pubkey wanted;

    assert_int_equal(imgstore_sign_key_from_agent(&agent_key, fx->sock, NULL), IMGSTORE_ENOTFOUND);
    assert_null(agent_key);
    agent_add(fx, path);
    assert_int_equal(imgstore_sign_key_generate(&other, NULL), 0);
    imgstore_sign_key_public(&wanted, other);
    assert_error(imgstore_sign_key_from_agent(&agent_key, fx->sock, &wanted), IMGSTORE_ENOTFOUND,
                 imgstore_sign_key_id(other));
    assert_null(agent_key);
    imgstore_sign_key_free(other);
    imgstore_sign_key_free(held);
}

static void agent_holding_only_rsa_keys_is_not_found(void **state)
{
    agent_fixture *fx = *state;
    char rsa_path[TEST_PATH_MAX];
    imgstore_sign_key *agent_key = NULL;

    test_keygen(rsa_path, fx->dir, "id_rsa", "-t rsa -b 2048 -N ''");
    agent_add(fx, rsa_path);
    assert_error(imgstore_sign_key_from_agent(&agent_key, fx->sock, NULL), IMGSTORE_ENOTFOUND,
                 "no Ed25519 key");
    assert_null(agent_key);
}

static void no_agent_listening_is_not_found(void **state)
{
    char dir[TEST_PATH_MAX], path[TEST_PATH_MAX], stale[TEST_PATH_MAX];
    imgstore_sign_key *key = (imgstore_sign_key *)&key;
    struct sockaddr_un addr;
    int fd;

    (void)state;
    test_tmp_dir(dir, "agent-none");
    test_path(path, dir, "no.sock");
    assert_error(imgstore_sign_key_from_agent(&key, path, NULL), IMGSTORE_ENOTFOUND, path);
    assert_null(key);

    /* A socket file left behind by an agent that died: bound, never listening. */
    test_path(stale, dir, "stale.sock");
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, stale);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    close(fd);
    assert_error(imgstore_sign_key_from_agent(&key, stale, NULL), IMGSTORE_ENOTFOUND, stale);
    assert_null(key);

    memset(stale, 'a', sizeof(stale) - 1);
    stale[0] = '/';
    stale[200] = '\0';
    assert_error(imgstore_sign_key_from_agent(&key, stale, NULL), IMGSTORE_EINVALID,
                 "socket path too long");
    assert_null(key);
    assert_error(imgstore_sign_key_from_agent(&key, NULL, NULL), IMGSTORE_EINVALID,
                 "SSH_AUTH_SOCK");
    assert_error(imgstore_sign_key_from_agent(&key, "", NULL), IMGSTORE_EINVALID, "SSH_AUTH_SOCK");
    assert_int_equal(imgstore_sign_key_from_agent(NULL, path, NULL), IMGSTORE_EINVALID);
}

static void agent_key_cannot_be_saved(void **state)
{
    agent_fixture *fx = *state;
    char path[TEST_PATH_MAX], out_path[TEST_PATH_MAX];
    imgstore_sign_key *key = saved_key(path, fx, "key");
    imgstore_sign_key *agent_key = NULL;
    struct stat st;

    agent_add(fx, path);
    assert_int_equal(imgstore_sign_key_from_agent(&agent_key, fx->sock, NULL), 0);
    test_path(out_path, fx->dir, "exported");
    assert_error(imgstore_sign_key_save(agent_key, out_path, NULL), IMGSTORE_EINVALID,
                 "held by ssh-agent");
    assert_int_not_equal(lstat(out_path, &st), 0);
    imgstore_sign_key_free(agent_key);
    imgstore_sign_key_free(key);
}

static void signing_fails_cleanly_once_the_agent_drops_the_key_or_dies(void **state)
{
    agent_fixture *fx = *state;
    char path[TEST_PATH_MAX];
    imgstore_sign_key *key = saved_key(path, fx, "key");
    imgstore_sign_key *agent_key = NULL;
    char *sig = (char *)&sig;

    agent_add(fx, path);
    assert_int_equal(imgstore_sign_key_from_agent(&agent_key, fx->sock, NULL), 0);
    assert_int_equal(test_run("SSH_AUTH_SOCK='%s' ssh-add -q -D >/dev/null 2>&1", fx->sock), 0);
    assert_error(imgstore_sign_sshsig(&sig, agent_key, NS, "m", 1), IMGSTORE_ERROR,
                 "refused to sign");
    assert_null(sig);

    assert_int_equal(kill(fx->agent_pid, SIGTERM), 0);
    assert_true(wait_for_path(fx->sock, false));
    fx->agent_pid = -1;
    assert_error(imgstore_sign_sshsig(&sig, agent_key, NS, "m", 1), IMGSTORE_ENOTFOUND,
                 "cannot connect to ssh-agent");
    assert_null(sig);
    imgstore_sign_key_free(agent_key);
    imgstore_sign_key_free(key);
}

/*
 * A fake agent: a forked child that answers `count` connections, one canned answer each
 * (sent as is, length prefix included), after reading the whole request. Returns its pid.
 */
typedef struct {
    const uint8_t *data;
    size_t len;
} canned;

/* Exactly `len` bytes from `fd`; false on EOF or error. */
static bool read_exactly(int fd, uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t got = read(fd, buf, len);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return false;
        buf += got;
        len -= (size_t)got;
    }
    return true;
}

/*
 * Read one framed request (u32 length, then the body) the way ssh-agent does. A single
 * read() is not enough: the client may send the length and the body in two writes, and
 * answering after the first would close the socket under the second (EPIPE for the
 * client, or ECONNRESET because the body was left unread).
 */
static bool read_request(int conn)
{
    uint8_t prefix[4], body[4096];
    size_t len;

    if (!read_exactly(conn, prefix, sizeof(prefix)))
        return false;
    len = (size_t)prefix[0] << 24 | (size_t)prefix[1] << 16 | (size_t)prefix[2] << 8 | prefix[3];
    return len <= sizeof(body) && read_exactly(conn, body, len);
}

static pid_t fake_agent(const char *sock, const canned *answers, size_t count)
{
    struct sockaddr_un addr;
    int listener;
    pid_t pid;

    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, sock);
    unlink(sock);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(listener >= 0);
    assert_int_equal(bind(listener, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(listener, 4), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Should the test fail before connecting, do not linger holding ctest's output pipe. */
        alarm(30);
        for (size_t i = 0; i < count; i++) {
            int conn = accept(listener, NULL, NULL);

            if (conn < 0 || !read_request(conn))
                _exit(1);
            if (answers[i].len > 0)
                (void)!write(conn, answers[i].data, answers[i].len);
            close(conn);
        }
        _exit(0);
    }
    close(listener);
    return pid;
}

static void fake_agent_done(pid_t pid)
{
    int status = 0;

    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* An identities answer listing one Ed25519 key: what from_agent needs to make a handle. */
static size_t identities_answer(uint8_t *buf, size_t cap, const imgstore_sign_key *key)
{
    uint8_t pub_blob[IMGSTORE_SIGN__PUBBLOB_LEN];
    imgstore_sign__writer writer;

    imgstore_sign__pubkey_blob(pub_blob, key->pub.ed25519);
    imgstore_sign__writer_init(&writer, buf, cap);
    imgstore_sign__put_u32(&writer, 1 + 4 + 4 + sizeof(pub_blob) + 4 + 4);
    imgstore_sign__put_u8(&writer, 12); /* SSH_AGENT_IDENTITIES_ANSWER */
    imgstore_sign__put_u32(&writer, 1);
    imgstore_sign__put_string(&writer, pub_blob, sizeof(pub_blob));
    imgstore_sign__put_cstring(&writer, "fake");
    assert_false(writer.overflow);
    return writer.len;
}

static void malformed_agent_answers_are_refused(void **state)
{
    static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 12};
    static const uint8_t empty[] = {0, 0, 0, 0};
    static const uint8_t short_list[] = {0, 0, 0, 5, 12, 0, 0, 3, 0xe8}; /* 1000 keys, none sent */
    static const uint8_t wrong_type[] = {0, 0, 0, 1, 99};
    static const uint8_t failure[] = {0, 0, 0, 1, 5};
    static const struct {
        canned answer;
        int code;
        const char *fragment;
    } cases[] = {
        {{huge, sizeof(huge)}, IMGSTORE_EINVALID, "2147483647-byte message"},
        {{empty, sizeof(empty)}, IMGSTORE_EINVALID, "0-byte message"},
        {{short_list, sizeof(short_list)}, IMGSTORE_EINVALID, "truncated key list"},
        {{wrong_type, sizeof(wrong_type)}, IMGSTORE_EINVALID, "did not answer"},
        {{failure, sizeof(failure)}, IMGSTORE_ERROR, "refused to list"},
        {{NULL, 0}, IMGSTORE_ERROR, "connection closed"},
        {{huge, 3}, IMGSTORE_ERROR, "connection closed"},
    };
    char dir[TEST_PATH_MAX], sock[TEST_PATH_MAX];
    imgstore_sign_key *key = (imgstore_sign_key *)&key;

    (void)state;
    test_tmp_dir(dir, "agent-fake");
    test_path(sock, dir, "fake.sock");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        pid_t pid = fake_agent(sock, &cases[i].answer, 1);

        assert_error(imgstore_sign_key_from_agent(&key, sock, NULL), cases[i].code,
                     cases[i].fragment);
        assert_null(key);
        fake_agent_done(pid);
    }
}

static void agent_signatures_that_do_not_verify_are_refused(void **state)
{
    char dir[TEST_PATH_MAX], sock[TEST_PATH_MAX];
    uint8_t ids[256], bad_sig[256], wrong_kind[256];
    imgstore_sign__writer writer;
    imgstore_sign_key *key = NULL, *agent_key = NULL;
    uint8_t sig_blob[IMGSTORE_SIGN__SIGBLOB_LEN], zeros[IMGSTORE_SIGN__SIG_LEN] = {0};
    char *sig = (char *)&sig;
    size_t ids_len;

    (void)state;
    test_tmp_dir(dir, "agent-fake-sign");
    test_path(sock, dir, "fake.sock");
    assert_int_equal(imgstore_sign_key_generate(&key, NULL), 0);
    ids_len = identities_answer(ids, sizeof(ids), key);

    /* A well-formed sign response whose signature is 64 zero bytes. */
    imgstore_sign__writer_init(&writer, sig_blob, sizeof(sig_blob));
    imgstore_sign__put_cstring(&writer, "ssh-ed25519");
    imgstore_sign__put_string(&writer, zeros, sizeof(zeros));
    imgstore_sign__writer_init(&writer, bad_sig, sizeof(bad_sig));
    imgstore_sign__put_u32(&writer, 1 + 4 + sizeof(sig_blob));
    imgstore_sign__put_u8(&writer, 14); /* SSH_AGENT_SIGN_RESPONSE */
    imgstore_sign__put_string(&writer, sig_blob, sizeof(sig_blob));
    {
        const canned answers[] = {{ids, ids_len}, {bad_sig, writer.len}};
        pid_t pid = fake_agent(sock, answers, 2);

        assert_int_equal(imgstore_sign_key_from_agent(&agent_key, sock, NULL), 0);
        assert_true(test_same_key(agent_key, key));
        assert_error(imgstore_sign_sshsig(&sig, agent_key, NS, "m", 1), IMGSTORE_ERROR,
                     "does not verify");
        assert_null(sig);
        fake_agent_done(pid);
    }
    /* An RSA-typed signature where an Ed25519 one belongs. */
    imgstore_sign__writer_init(&writer, sig_blob, sizeof(sig_blob));
    imgstore_sign__put_cstring(&writer, "rsa-sha2-512");
    imgstore_sign__put_string(&writer, zeros, 52);
    imgstore_sign__writer_init(&writer, wrong_kind, sizeof(wrong_kind));
    imgstore_sign__put_u32(&writer, 1 + 4 + sizeof(sig_blob));
    imgstore_sign__put_u8(&writer, 14);
    imgstore_sign__put_string(&writer, sig_blob, sizeof(sig_blob));
    {
        const canned answers[] = {{wrong_kind, writer.len}};
        pid_t pid = fake_agent(sock, answers, 1);

        assert_error(imgstore_sign_sshsig(&sig, agent_key, NS, "m", 1), IMGSTORE_EINVALID,
                     "other than an Ed25519 signature");
        assert_null(sig);
        fake_agent_done(pid);
    }
    imgstore_sign_key_free(agent_key);
    imgstore_sign_key_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(agent_key_signs_sshsig_that_ssh_keygen_verifies,
                                        agent_setup, agent_teardown),
        cmocka_unit_test_setup_teardown(agent_selects_the_requested_key_among_several, agent_setup,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(agent_without_the_requested_key_is_not_found, agent_setup,
                                        agent_teardown),
        cmocka_unit_test_setup_teardown(agent_holding_only_rsa_keys_is_not_found, agent_setup,
                                        agent_teardown),
        cmocka_unit_test(no_agent_listening_is_not_found),
        cmocka_unit_test_setup_teardown(agent_key_cannot_be_saved, agent_setup, agent_teardown),
        cmocka_unit_test_setup_teardown(signing_fails_cleanly_once_the_agent_drops_the_key_or_dies,
                                        agent_setup, agent_teardown),
        cmocka_unit_test(malformed_agent_answers_are_refused),
        cmocka_unit_test(agent_signatures_that_do_not_verify_are_refused),
    };

    test_require_tool("ssh-keygen");
    test_require_tool("ssh-agent");
    test_require_tool("ssh-add");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
