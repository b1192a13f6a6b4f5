/*
 * Helpers shared by the files of sign/: the key handle's layout, the SSH wire format
 * (RFC 4251 strings and integers) read and written within fixed bounds, PEM-style armour,
 * and the one signing primitive that both file keys and ssh-agent keys provide. Nothing here
 * is API; store/ and cli/ see only sign/sign.h.
 */
#ifndef IMGSTORE_SIGN_INTERNAL_H
#define IMGSTORE_SIGN_INTERNAL_H

#include "sign/sign.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMGSTORE_SIGN__ED25519       "ssh-ed25519"
#define IMGSTORE_SIGN__ED25519_LEN   11
#define IMGSTORE_SIGN__PUB_LEN       32
#define IMGSTORE_SIGN__SIG_LEN       64
#define IMGSTORE_SIGN__SEED_LEN      32
#define IMGSTORE_SIGN__SECRET_LEN    64 /* libsodium's and OpenSSH's layout: seed || pub */
#define IMGSTORE_SIGN__PUBBLOB_LEN   (4 + IMGSTORE_SIGN__ED25519_LEN + 4 + IMGSTORE_SIGN__PUB_LEN)
#define IMGSTORE_SIGN__SIGBLOB_LEN   (4 + IMGSTORE_SIGN__ED25519_LEN + 4 + IMGSTORE_SIGN__SIG_LEN)
#define IMGSTORE_SIGN__NAMESPACE_MAX 255

struct imgstore_sign_key {
    imgstore_sign_pubkey pub;
    char id[IMGSTORE_SIGN_KEYID_MAX]; /* computed once: callers ask for it per signature */
    /* seed || pub in sodium_malloc memory, read-only after creation; NULL for agent keys. */
    uint8_t *secret;
    char *agent_socket; /* agent keys only: signing reconnects, so a restarted agent works */
};

/** Initialise libsodium once per process; thread-safe. 0 or IMGSTORE_ERROR. */
int imgstore_sign__init(void);

/*
 * A cursor over untrusted bytes. Every take_* checks the remaining length first and returns
 * false, without moving, when the bytes are not there: parsers never read past a buffer.
 */
typedef struct {
    const uint8_t *data;
    size_t len;
    size_t off;
} imgstore_sign__reader;

void imgstore_sign__reader_init(imgstore_sign__reader *reader, const void *data, size_t len);
bool imgstore_sign__take_u8(imgstore_sign__reader *reader, uint8_t *out);
bool imgstore_sign__take_u32(imgstore_sign__reader *reader, uint32_t *out);
bool imgstore_sign__take_u64(imgstore_sign__reader *reader, uint64_t *out);
bool imgstore_sign__take_bytes(imgstore_sign__reader *reader, const uint8_t **out, size_t len);
/** An SSH string: uint32 length, then that many bytes (borrowed from the reader's buffer). */
bool imgstore_sign__take_string(imgstore_sign__reader *reader, const uint8_t **out,
                                size_t *len_out);
size_t imgstore_sign__remaining(const imgstore_sign__reader *reader);
/** True when the string equals the NUL-terminated `expected`. */
bool imgstore_sign__string_is(const uint8_t *str, size_t len, const char *expected);

/*
 * A writer into a fixed buffer the caller owns (sodium_malloc memory when it will hold a
 * secret). Overflow is sticky and checked once at the end, so building code stays linear.
 */
typedef struct {
    uint8_t *data;
    size_t cap;
    size_t len;
    bool overflow;
} imgstore_sign__writer;

void imgstore_sign__writer_init(imgstore_sign__writer *writer, void *buf, size_t cap);
void imgstore_sign__put_u8(imgstore_sign__writer *writer, uint8_t value);
void imgstore_sign__put_u32(imgstore_sign__writer *writer, uint32_t value);
void imgstore_sign__put_u64(imgstore_sign__writer *writer, uint64_t value);
void imgstore_sign__put_bytes(imgstore_sign__writer *writer, const void *data, size_t len);
void imgstore_sign__put_string(imgstore_sign__writer *writer, const void *data, size_t len);
void imgstore_sign__put_cstring(imgstore_sign__writer *writer, const char *str);

/**
 * Render untrusted bytes for an error message: printable ASCII as is, everything else as
 * \xNN, cut at 64 input bytes with "...". Always NUL-terminates `out` (cap >= 4).
 */
void imgstore_sign__quote(char *out, size_t cap, const uint8_t *str, size_t len);

/** The wire blob string("ssh-ed25519") || string(pub) that fingerprints and SSHSIG hash. */
void imgstore_sign__pubkey_blob(uint8_t out[IMGSTORE_SIGN__PUBBLOB_LEN],
                                const uint8_t pub[IMGSTORE_SIGN__PUB_LEN]);

/**
 * Parse a public key blob. Returns 0, or IMGSTORE_EINVALID naming `what` and the key type
 * ("WHAT is an ssh-rsa key; imgstore signs with Ed25519 only") or the damage.
 */
int imgstore_sign__pubkey_from_blob(uint8_t pub_out[IMGSTORE_SIGN__PUB_LEN], const uint8_t *blob,
                                    size_t len, const char *what);

/** Check a comment for a key file or public key line: at most 255 bytes, no control bytes. */
int imgstore_sign__check_comment(const uint8_t *comment, size_t len, const char *what);

/** Bytes imgstore_sign__armor() writes for a `blob_len` blob, NUL excluded. */
size_t imgstore_sign__armor_len(size_t blob_len, const char *label);

/**
 * "-----BEGIN LABEL-----\n", standard padded base64 in 70-column lines each ending in "\n",
 * "-----END LABEL-----\n": the layout ssh-keygen writes. `out` holds armor_len() + 1 bytes.
 */
void imgstore_sign__armor(char *out, const uint8_t *blob, size_t blob_len, const char *label);

/**
 * Undo imgstore_sign__armor(): optional surrounding whitespace, exact BEGIN and END lines,
 * base64 lines (LF or CRLF) in between, nothing else. Decodes into `out` (up to `cap` bytes).
 * Returns 0 or IMGSTORE_EINVALID with a message that starts with `what`.
 */
int imgstore_sign__dearmor(uint8_t *out, size_t cap, size_t *out_len, const char *text,
                           size_t text_len, const char *label, const char *what);

/** True when `text` (after leading whitespace) starts with "-----BEGIN LABEL-----". */
bool imgstore_sign__has_begin(const char *text, size_t text_len, const char *label);

/**
 * Build a key handle from a 32-byte seed: derives the key pair into sodium_malloc memory
 * and computes the key id. `comment` need not be NUL-terminated; it must pass
 * imgstore_sign__check_comment(). Returns 0 or IMGSTORE_ERROR.
 */
int imgstore_sign__key_from_seed(imgstore_sign_key **out, const uint8_t *seed, const char *comment,
                                 size_t comment_len);

#define IMGSTORE_SIGN__OPENSSH_LABEL   "OPENSSH PRIVATE KEY"
#define IMGSTORE_SIGN__ENCRYPTED_LABEL "IMGSTORE ENCRYPTED PRIVATE KEY"
#define IMGSTORE_SIGN__KEYBLOB_MAX     1024 /* an openssh-key-v1 Ed25519 blob is <= ~500 bytes */

/**
 * Write `key` as an unencrypted openssh-key-v1 blob (before armour) into `buf`, which must be
 * sodium_malloc memory: it receives the seed. 0 or IMGSTORE_ERROR.
 */
int imgstore_sign__openssh_build(uint8_t *buf, size_t cap, size_t *len_out,
                                 const imgstore_sign_key *key);

/**
 * Parse an openssh-key-v1 blob (after armour). `path` names the file in messages. Returns 0,
 * IMGSTORE_EINVALID (other key type, encrypted, several keys, truncated, corrupt).
 */
int imgstore_sign__openssh_parse(imgstore_sign_key **out, const uint8_t *blob, size_t len,
                                 const char *path);

/**
 * Encrypt an openssh-key-v1 blob under `passphrase` into imgstore's encrypted key blob
 * (before armour). 0 or IMGSTORE_ERROR.
 */
int imgstore_sign__encrypted_seal(uint8_t *buf, size_t cap, size_t *len_out, const uint8_t *plain,
                                  size_t plain_len, const imgstore_sign_key *key,
                                  const char *passphrase);

/**
 * Decrypt imgstore's encrypted key blob and parse the key inside. Returns 0,
 * IMGSTORE_EINVALID (malformed, unsupported parameters), IMGSTORE_EVERIFY (wrong passphrase)
 * or IMGSTORE_ERROR.
 */
int imgstore_sign__encrypted_open(imgstore_sign_key **out, const uint8_t *blob, size_t len,
                                  const char *passphrase, const char *path);

/**
 * Sign `data` with Ed25519: locally for file keys, through the agent for agent keys (whose
 * answer is verified before it is returned). 0, IMGSTORE_EINVALID, IMGSTORE_ENOTFOUND or
 * IMGSTORE_ERROR.
 */
int imgstore_sign__sign_raw(uint8_t sig_out[IMGSTORE_SIGN__SIG_LEN], const imgstore_sign_key *key,
                            const uint8_t *data, size_t len);

/** The agent half of imgstore_sign__sign_raw(); in agent.c. */
int imgstore_sign__agent_sign(uint8_t sig_out[IMGSTORE_SIGN__SIG_LEN], const imgstore_sign_key *key,
                              const uint8_t *data, size_t len);

#endif
