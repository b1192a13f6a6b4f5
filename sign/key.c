/*
 * The private key handle: creating one (fresh or from a seed read out of a key file),
 * its public half and key id, wiping it, and the Ed25519 signing primitive for keys held in
 * this process. Secret bytes live only in sodium_malloc memory, read-only once written, and
 * are never formatted into a message. Key files are keyfile.c's job, agent keys agent.c's.
 */
#include "sign/sign_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int imgstore_sign__key_from_seed(imgstore_sign_key **out, const uint8_t *seed, const char *comment,
                                 size_t comment_len)
{
    uint8_t pub[IMGSTORE_SIGN__PUB_LEN];
    imgstore_sign_key *key = NULL;
    int err = 0;

    *out = NULL;
    if (comment_len >= IMGSTORE_SIGN_COMMENT_MAX) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "key comment longer than %d bytes",
                                 IMGSTORE_SIGN_COMMENT_MAX - 1);
        goto done;
    }
    if ((err = imgstore_sign__init()) < 0)
        goto done;
    if ((key = calloc(1, sizeof(*key))) == NULL ||
        (key->secret = sodium_malloc(IMGSTORE_SIGN__SECRET_LEN)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory for a key");
        goto done;
    }
    if (crypto_sign_seed_keypair(pub, key->secret, seed) != 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "libsodium could not derive an Ed25519 key");
        goto done;
    }
    /* A stray write through a bug elsewhere now faults instead of corrupting the key. */
    sodium_mprotect_readonly(key->secret);
    memcpy(key->pub.ed25519, pub, sizeof(pub));
    memcpy(key->pub.comment, comment, comment_len);
    key->pub.comment[comment_len] = '\0';
    imgstore_sign_pubkey_fingerprint(key->id, &key->pub);
    *out = key;
    key = NULL;
done:
    imgstore_sign_key_free(key);
    return err;
}

int imgstore_sign_key_generate(imgstore_sign_key **out, const char *comment)
{
    uint8_t *seed = NULL;
    size_t comment_len;
    int err;

    if (out == NULL)
        return imgstore_error_set(IMGSTORE_EINVALID, "generate key: no output given");
    *out = NULL;
    if (comment == NULL)
        comment = "";
    comment_len = strlen(comment);
    if ((err = imgstore_sign__check_comment((const uint8_t *)comment, comment_len,
                                            "generate key")) < 0)
        return err;
    if ((err = imgstore_sign__init()) < 0)
        return err;
    if ((seed = sodium_malloc(IMGSTORE_SIGN__SEED_LEN)) == NULL)
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory for a key");
    randombytes_buf(seed, IMGSTORE_SIGN__SEED_LEN);
    err = imgstore_sign__key_from_seed(out, seed, comment, comment_len);
    sodium_free(seed);
    return err;
}

void imgstore_sign_key_free(imgstore_sign_key *key)
{
    if (key == NULL)
        return;
    sodium_free(key->secret); /* zeroes before unmapping, read-only or not */
    free(key->agent_socket);
    free(key);
}

void imgstore_sign_key_public(imgstore_sign_pubkey *out, const imgstore_sign_key *key)
{
    *out = key->pub;
}

const char *imgstore_sign_key_id(const imgstore_sign_key *key)
{
    return key->id;
}

int imgstore_sign__sign_raw(uint8_t sig_out[IMGSTORE_SIGN__SIG_LEN], const imgstore_sign_key *key,
                            const uint8_t *data, size_t len)
{
    int err;

    if ((err = imgstore_sign__init()) < 0)
        return err;
    if (key->secret == NULL)
        return imgstore_sign__agent_sign(sig_out, key, data, len);
    if (crypto_sign_detached(sig_out, NULL, data, len, key->secret) != 0)
        return imgstore_error_set(IMGSTORE_ERROR, "libsodium failed to sign with key %s", key->id);
    return 0;
}
