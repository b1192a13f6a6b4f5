/*
 * Keys held by ssh-agent (draft-miller-ssh-agent): finding an Ed25519 identity and asking the
 * agent to sign, so that the private key never enters this process. Each operation opens its
 * own connection, which keeps a key handle free of shared socket state between threads and
 * survives an agent restart. Agent answers are untrusted input: lengths are capped, parsing
 * is bounded, and a signature is verified before anyone sees it. The SSHSIG layer on top is
 * sshsig.c's.
 */
#include "sign/sign_internal.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define AGENT_FAILURE             5
#define AGENTC_REQUEST_IDENTITIES 11
#define AGENT_IDENTITIES_ANSWER   12
#define AGENTC_SIGN_REQUEST       13
#define AGENT_SIGN_RESPONSE       14
#define AGENT_MESSAGE_MAX         (256 * 1024) /* OpenSSH's own cap on agent messages */
/* Long enough for an agent that asks for confirmation (ssh-add -c), short of forever. */
#define AGENT_TIMEOUT_SECONDS     60

static int agent_connect(int *out, const char *socket_path)
{
    struct sockaddr_un addr;
    struct timeval timeout = {.tv_sec = AGENT_TIMEOUT_SECONDS, .tv_usec = 0};
    int fd, saved;

    *out = -1;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(socket_path) >= sizeof(addr.sun_path))
        return imgstore_error_set(IMGSTORE_EINVALID, "ssh-agent socket path too long: %s",
                                  socket_path);
    memcpy(addr.sun_path, socket_path, strlen(socket_path));
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "cannot create a socket for ssh-agent: %s",
                                  strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0 ||
        connect(fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0) {
        saved = errno;
        close(fd);
        return imgstore_error_set(
            saved == ENOENT || saved == ECONNREFUSED ? IMGSTORE_ENOTFOUND : IMGSTORE_ERROR,
            "cannot connect to ssh-agent at %s: %s", socket_path, strerror(saved));
    }
    *out = fd;
    return 0;
}

static int agent_io_error(const char *socket_path, const char *verb)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return imgstore_error_set(IMGSTORE_ERROR, "ssh-agent at %s did not %s within %d s",
                                  socket_path, verb, AGENT_TIMEOUT_SECONDS);
    return imgstore_error_set(IMGSTORE_ERROR, "ssh-agent at %s: cannot %s: %s", socket_path, verb,
                              errno == 0 ? "connection closed" : strerror(errno));
}

static int send_all(int fd, const uint8_t *data, size_t len)
{
    while (len > 0) {
        /* MSG_NOSIGNAL: an agent that hangs up must cost an error, not the process. */
        ssize_t sent = send(fd, data, len, MSG_NOSIGNAL);

        if (sent < 0 && errno == EINTR)
            continue;
        if (sent < 0)
            return -1;
        data += sent;
        len -= (size_t)sent;
    }
    return 0;
}

static int recv_all(int fd, uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t got = recv(fd, data, len, 0);

        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = 0;
            return -1;
        }
        data += got;
        len -= (size_t)got;
    }
    return 0;
}

/*
 * Send one request (its body without the length prefix) and read one answer into a new
 * malloc'd buffer; neither carries a secret.
 */
static int agent_call(uint8_t **answer_out, size_t *answer_len_out, const char *socket_path,
                      const uint8_t *request, size_t request_len)
{
    uint8_t prefix[4], *answer = NULL;
    uint32_t answer_len;
    imgstore_sign__reader reader;
    int fd = -1, err = 0;

    *answer_out = NULL;
    if ((err = agent_connect(&fd, socket_path)) < 0)
        goto done;
    prefix[0] = (uint8_t)(request_len >> 24);
    prefix[1] = (uint8_t)(request_len >> 16);
    prefix[2] = (uint8_t)(request_len >> 8);
    prefix[3] = (uint8_t)request_len;
    errno = 0;
    if (send_all(fd, prefix, sizeof(prefix)) != 0 || send_all(fd, request, request_len) != 0) {
        err = agent_io_error(socket_path, "send");
        goto done;
    }
    errno = 0;
    if (recv_all(fd, prefix, sizeof(prefix)) != 0) {
        err = agent_io_error(socket_path, "answer");
        goto done;
    }
    imgstore_sign__reader_init(&reader, prefix, sizeof(prefix));
    imgstore_sign__take_u32(&reader, &answer_len);
    if (answer_len == 0 || answer_len > AGENT_MESSAGE_MAX) {
        err = imgstore_error_set(IMGSTORE_EINVALID,
                                 "ssh-agent at %s sent a %u-byte message (limit %d)", socket_path,
                                 (unsigned)answer_len, AGENT_MESSAGE_MAX);
        goto done;
    }
    if ((answer = malloc(answer_len)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory talking to ssh-agent");
        goto done;
    }
    errno = 0;
    if (recv_all(fd, answer, answer_len) != 0) {
        err = agent_io_error(socket_path, "answer");
        goto done;
    }
    *answer_out = answer;
    *answer_len_out = answer_len;
    answer = NULL;
done:
    free(answer);
    if (fd >= 0)
        close(fd);
    return err;
}

/* Agent comments are free text of any length; keep what fits, with control bytes made safe. */
static void copy_agent_comment(char *out, const uint8_t *comment, size_t len)
{
    if (len > IMGSTORE_SIGN_COMMENT_MAX - 1)
        len = IMGSTORE_SIGN_COMMENT_MAX - 1;
    for (size_t i = 0; i < len; i++)
        out[i] = comment[i] < 0x20 || comment[i] == 0x7f ? '?' : (char)comment[i];
    out[len] = '\0';
}

/* Walk an identities answer for the wanted Ed25519 key. 0, IMGSTORE_ENOTFOUND/EINVALID. */
static int pick_identity(imgstore_sign_pubkey *out, const uint8_t *answer, size_t len,
                         const imgstore_sign_pubkey *wanted, const char *socket_path)
{
    imgstore_sign__reader reader;
    const uint8_t *blob, *comment;
    size_t blob_len, comment_len;
    char wanted_id[IMGSTORE_SIGN_KEYID_MAX];
    uint32_t count;
    uint8_t type;

    imgstore_sign__reader_init(&reader, answer, len);
    if (!imgstore_sign__take_u8(&reader, &type) || type != AGENT_IDENTITIES_ANSWER ||
        !imgstore_sign__take_u32(&reader, &count))
        return imgstore_error_set(
            IMGSTORE_EINVALID, "ssh-agent at %s did not answer the request for keys", socket_path);
    for (uint32_t i = 0; i < count; i++) {
        imgstore_sign_pubkey candidate;

        if (!imgstore_sign__take_string(&reader, &blob, &blob_len) ||
            !imgstore_sign__take_string(&reader, &comment, &comment_len))
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "ssh-agent at %s sent a truncated key list", socket_path);
        memset(&candidate, 0, sizeof(candidate));
        /* Other types and certificates are simply not ours; skip them quietly. */
        if (imgstore_sign__pubkey_from_blob(candidate.ed25519, blob, blob_len, "agent key") < 0)
            continue;
        if (wanted != NULL && !imgstore_sign_pubkey_equal(&candidate, wanted))
            continue;
        copy_agent_comment(candidate.comment, comment, comment_len);
        *out = candidate;
        return 0;
    }
    if (wanted == NULL)
        return imgstore_error_set(IMGSTORE_ENOTFOUND, "ssh-agent at %s holds no Ed25519 key",
                                  socket_path);
    imgstore_sign_pubkey_fingerprint(wanted_id, wanted);
    return imgstore_error_set(IMGSTORE_ENOTFOUND, "ssh-agent at %s does not hold key %s",
                              socket_path, wanted_id);
}

int imgstore_sign_key_from_agent(imgstore_sign_key **out, const char *socket_path,
                                 const imgstore_sign_pubkey *pubkey)
{
    static const uint8_t request[] = {AGENTC_REQUEST_IDENTITIES};
    imgstore_sign_key *key = NULL;
    imgstore_sign_pubkey found;
    uint8_t *answer = NULL;
    size_t answer_len = 0;
    int err;

    if (out == NULL)
        return imgstore_error_set(IMGSTORE_EINVALID, "agent key: no output given");
    *out = NULL;
    if (socket_path == NULL || socket_path[0] == '\0')
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "no ssh-agent socket given (is SSH_AUTH_SOCK set?)");
    if ((err = imgstore_sign__init()) < 0)
        goto done;
    if ((err = agent_call(&answer, &answer_len, socket_path, request, sizeof(request))) < 0)
        goto done;
    if (answer[0] == AGENT_FAILURE) {
        err = imgstore_error_set(IMGSTORE_ERROR, "ssh-agent at %s refused to list its keys",
                                 socket_path);
        goto done;
    }
    if ((err = pick_identity(&found, answer, answer_len, pubkey, socket_path)) < 0)
        goto done;
    if ((key = calloc(1, sizeof(*key))) == NULL ||
        (key->agent_socket = strdup(socket_path)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory for an agent key");
        goto done;
    }
    key->pub = found;
    imgstore_sign_pubkey_fingerprint(key->id, &key->pub);
    *out = key;
    key = NULL;
done:
    imgstore_sign_key_free(key);
    free(answer);
    return err;
}

/* The signature inside a sign response: string(string("ssh-ed25519") string(sig)). */
static int parse_sign_response(const uint8_t **sig_out, const uint8_t *answer, size_t len,
                               const char *socket_path)
{
    imgstore_sign__reader reader, inner;
    const uint8_t *sig_blob, *type, *sig;
    size_t sig_blob_len, type_len, sig_len;
    uint8_t kind;

    imgstore_sign__reader_init(&reader, answer, len);
    if (!imgstore_sign__take_u8(&reader, &kind))
        return imgstore_error_set(IMGSTORE_EINVALID, "ssh-agent at %s sent an empty answer",
                                  socket_path);
    if (kind == AGENT_FAILURE)
        return imgstore_error_set(IMGSTORE_ERROR,
                                  "ssh-agent at %s refused to sign (key removed, or "
                                  "confirmation denied?)",
                                  socket_path);
    if (kind != AGENT_SIGN_RESPONSE ||
        !imgstore_sign__take_string(&reader, &sig_blob, &sig_blob_len) ||
        imgstore_sign__remaining(&reader) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "ssh-agent at %s sent a malformed answer",
                                  socket_path);
    imgstore_sign__reader_init(&inner, sig_blob, sig_blob_len);
    if (!imgstore_sign__take_string(&inner, &type, &type_len) ||
        !imgstore_sign__string_is(type, type_len, IMGSTORE_SIGN__ED25519) ||
        !imgstore_sign__take_string(&inner, &sig, &sig_len) || sig_len != IMGSTORE_SIGN__SIG_LEN ||
        imgstore_sign__remaining(&inner) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "ssh-agent at %s sent something other than an Ed25519 "
                                  "signature",
                                  socket_path);
    *sig_out = sig;
    return 0;
}

int imgstore_sign__agent_sign(uint8_t sig_out[IMGSTORE_SIGN__SIG_LEN], const imgstore_sign_key *key,
                              const uint8_t *data, size_t len)
{
    uint8_t pub_blob[IMGSTORE_SIGN__PUBBLOB_LEN], *request = NULL, *answer = NULL;
    size_t request_cap = 1 + 4 + sizeof(pub_blob) + 4 + len + 4, answer_len = 0;
    imgstore_sign__writer writer;
    const uint8_t *sig = NULL;
    int err;

    if (len > AGENT_MESSAGE_MAX - 128)
        return imgstore_error_set(IMGSTORE_EINVALID, "%zu bytes are too many for ssh-agent to sign",
                                  len);
    if ((request = malloc(request_cap)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory talking to ssh-agent");
        goto done;
    }
    imgstore_sign__pubkey_blob(pub_blob, key->pub.ed25519);
    imgstore_sign__writer_init(&writer, request, request_cap);
    imgstore_sign__put_u8(&writer, AGENTC_SIGN_REQUEST);
    imgstore_sign__put_string(&writer, pub_blob, sizeof(pub_blob));
    imgstore_sign__put_string(&writer, data, len);
    imgstore_sign__put_u32(&writer, 0); /* flags: only RSA keys take any */
    if ((err = agent_call(&answer, &answer_len, key->agent_socket, request, writer.len)) < 0)
        goto done;
    if ((err = parse_sign_response(&sig, answer, answer_len, key->agent_socket)) < 0)
        goto done;
    /* A confused or hostile agent must not get a bad signature published under our name. */
    if (crypto_sign_verify_detached(sig, data, len, key->pub.ed25519) != 0) {
        err = imgstore_error_set(IMGSTORE_ERROR,
                                 "ssh-agent at %s returned a signature that does not verify "
                                 "with key %s",
                                 key->agent_socket, key->id);
        goto done;
    }
    memcpy(sig_out, sig, IMGSTORE_SIGN__SIG_LEN);
done:
    free(answer);
    free(request);
    return err;
}
