/*
 * Keys and signatures: Ed25519 through libsodium, in the formats operators already verify
 * with stock tools. Public keys are OpenSSH lines ("ssh-ed25519 AAAA... comment"), key ids
 * are OpenSSH SHA256 fingerprints, and signatures are SSH signatures (the SSHSIG format of
 * OpenSSH's PROTOCOL.sshsig) so that `ssh-keygen -Y verify` and git's gpg.format=ssh verify
 * what imgstore signed. Knows nothing of git, HTTP or argv.
 */
#ifndef IMGSTORE_SIGN_H
#define IMGSTORE_SIGN_H

#include "common/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMGSTORE_SIGN_NAMESPACE   "imgstore" /* SSHSIG namespace for manifests and channels */
#define IMGSTORE_SIGN_KEYID_MAX   64         /* "SHA256:" + 43 base64 chars + NUL fits */
#define IMGSTORE_SIGN_COMMENT_MAX 256
#define IMGSTORE_SIGN_ARMOR_MAX   4096 /* an armored Ed25519 SSHSIG is ~300 bytes */

/* A public key: what policies list and signatures name. A plain value, no ownership. */
typedef struct {
    uint8_t ed25519[32];
    char comment[IMGSTORE_SIGN_COMMENT_MAX];
} imgstore_sign_pubkey;

/* A private key, in sodium_malloc'd memory, or a handle on a key held by ssh-agent. */
typedef struct imgstore_sign_key imgstore_sign_key;

/**
 * Generate a new Ed25519 key; `comment` (NULL for none) labels it, at most 255 bytes and no
 * control characters. *out belongs to the caller (imgstore_sign_key_free()). Returns 0,
 * IMGSTORE_EINVALID (bad comment), IMGSTORE_ERROR.
 */
int imgstore_sign_key_generate(imgstore_sign_key **out, const char *comment);

/**
 * Write a private key file with mode 0600, atomically (temp file, fsync, link into place, so
 * an existing file is never replaced). Without a passphrase (NULL or ""): the OpenSSH private
 * key format (openssh-key-v1, unencrypted), usable by ssh-keygen and ssh-agent. With one:
 * imgstore's encrypted format (Argon2id via crypto_pwhash + XSalsa20-Poly1305 via
 * crypto_secretbox; layout in sign/encrypted_key.c), see docs/security.md.
 * Returns 0, IMGSTORE_EEXISTS (path exists), IMGSTORE_EINVALID (an agent key: nothing to
 * save), IMGSTORE_ERROR.
 */
int imgstore_sign_key_save(const imgstore_sign_key *key, const char *path, const char *passphrase);

/**
 * Load a private key: an unencrypted OpenSSH Ed25519 key (a passphrase is then ignored), or
 * imgstore's encrypted format (then `passphrase` is required). Files over 64 KiB are refused.
 * Returns 0, IMGSTORE_ENOTFOUND, IMGSTORE_EINVALID (corrupt or truncated file, key of another
 * type such as RSA or ECDSA, encrypted OpenSSH key, missing passphrase: the message says
 * which), IMGSTORE_EVERIFY (wrong passphrase), IMGSTORE_ERROR.
 */
int imgstore_sign_key_load(imgstore_sign_key **out, const char *path, const char *passphrase);

/**
 * Use a key held by the ssh-agent at `socket_path` ($SSH_AUTH_SOCK): the Ed25519 key whose
 * public key is `pubkey`, or the first Ed25519 key when `pubkey` is NULL. Signing then asks
 * the agent (a new connection per signature) and checks its answer; the private key never
 * enters this process. Returns 0, IMGSTORE_EINVALID (no socket path, malformed or oversized
 * agent answer), IMGSTORE_ENOTFOUND (no agent listening, or it holds no such key),
 * IMGSTORE_ERROR.
 */
int imgstore_sign_key_from_agent(imgstore_sign_key **out, const char *socket_path,
                                 const imgstore_sign_pubkey *pubkey);

/** Wipe and free. NULL-safe. */
void imgstore_sign_key_free(imgstore_sign_key *key);

/** The key's public half, comment included. */
void imgstore_sign_key_public(imgstore_sign_pubkey *out, const imgstore_sign_key *key);

/** The key id: OpenSSH SHA256 fingerprint "SHA256:...". Borrowed from `key`. */
const char *imgstore_sign_key_id(const imgstore_sign_key *key);

/** Parse "ssh-ed25519 AAAA... [comment]". IMGSTORE_EINVALID for other key types or junk. */
int imgstore_sign_pubkey_parse(imgstore_sign_pubkey *out, const char *line);

/** "ssh-ed25519 AAAA... comment" (no newline); free() it. */
int imgstore_sign_pubkey_format(char **out, const imgstore_sign_pubkey *pubkey);

/** OpenSSH SHA256 fingerprint, "SHA256:<unpadded base64 of sha256(key blob)>". */
void imgstore_sign_pubkey_fingerprint(char out[IMGSTORE_SIGN_KEYID_MAX],
                                      const imgstore_sign_pubkey *pubkey);

/** Same key material; comments are labels and are not compared. */
bool imgstore_sign_pubkey_equal(const imgstore_sign_pubkey *a, const imgstore_sign_pubkey *b);

/**
 * Sign `msg` as an armored SSH signature ("-----BEGIN SSH SIGNATURE-----" ... ) with
 * `namespace` ("imgstore" for manifests and channel states, "git" for commits) and SHA-512,
 * exactly as `ssh-keygen -Y sign -n NAMESPACE` would, byte for byte. *out is NUL-terminated;
 * free() it. Returns 0, IMGSTORE_EINVALID (empty or over-long namespace), IMGSTORE_ENOTFOUND
 * or IMGSTORE_ERROR (agent keys: the agent is gone, refused, or answered wrongly).
 */
int imgstore_sign_sshsig(char **out, const imgstore_sign_key *key, const char *namespace,
                         const void *msg, size_t len);

/**
 * Verify an armored SSH signature over `msg` in `namespace`; on success *signer_out is the
 * key that signed, with an empty comment (the caller decides whether it trusts that key).
 * Accepts SHA-512 and SHA-256 signatures; only Ed25519 keys. Returns 0, IMGSTORE_EINVALID
 * (malformed armour or blob, another key type, armour over IMGSTORE_SIGN_ARMOR_MAX: the
 * message says what), IMGSTORE_EVERIFY (well-formed but does not verify, or another
 * namespace).
 */
int imgstore_sign_sshsig_verify(imgstore_sign_pubkey *signer_out, const char *armored,
                                size_t armored_len, const char *namespace, const void *msg,
                                size_t len);

#endif
