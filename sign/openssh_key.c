/*
 * The openssh-key-v1 private key blob of OpenSSH's PROTOCOL.key, unencrypted and holding one
 * Ed25519 key: built for files that ssh-keygen, ssh-add and ssh read, and parsed strictly
 * from files they wrote. Parsing names what it finds when it is not ours to read (RSA,
 * ECDSA, passphrase-protected) so that the operator learns what to do. Armour and files are
 * keyfile.c's job; this file sees bytes only.
 */
#include "sign/sign_internal.h"

#include <sodium.h>
#include <string.h>

#define AUTH_MAGIC     "openssh-key-v1" /* followed by its NUL on the wire */
#define AUTH_MAGIC_LEN 15
#define BLOCK_SIZE     8 /* the "none" cipher's block size, which padding rounds up to */

int imgstore_sign__openssh_build(uint8_t *buf, size_t cap, size_t *len_out,
                                 const imgstore_sign_key *key)
{
    uint8_t pub_blob[IMGSTORE_SIGN__PUBBLOB_LEN];
    imgstore_sign__writer writer;
    size_t private_len_at, private_start;
    uint32_t checkint;

    imgstore_sign__pubkey_blob(pub_blob, key->pub.ed25519);
    /* Random check bytes, as ssh-keygen writes: they only matter once encrypted. */
    checkint = randombytes_random();
    imgstore_sign__writer_init(&writer, buf, cap);
    imgstore_sign__put_bytes(&writer, AUTH_MAGIC, AUTH_MAGIC_LEN);
    imgstore_sign__put_cstring(&writer, "none"); /* ciphername */
    imgstore_sign__put_cstring(&writer, "none"); /* kdfname */
    imgstore_sign__put_string(&writer, NULL, 0); /* kdfoptions */
    imgstore_sign__put_u32(&writer, 1);
    imgstore_sign__put_string(&writer, pub_blob, sizeof(pub_blob));
    private_len_at = writer.len;
    imgstore_sign__put_u32(&writer, 0); /* patched below, once the padded length is known */
    private_start = writer.len;
    imgstore_sign__put_u32(&writer, checkint);
    imgstore_sign__put_u32(&writer, checkint);
    imgstore_sign__put_cstring(&writer, IMGSTORE_SIGN__ED25519);
    imgstore_sign__put_string(&writer, key->pub.ed25519, IMGSTORE_SIGN__PUB_LEN);
    imgstore_sign__put_string(&writer, key->secret, IMGSTORE_SIGN__SECRET_LEN);
    imgstore_sign__put_cstring(&writer, key->pub.comment);
    for (uint8_t pad = 1; (writer.len - private_start) % BLOCK_SIZE != 0; pad++)
        imgstore_sign__put_u8(&writer, pad);
    if (writer.overflow)
        return imgstore_error_set(IMGSTORE_ERROR, "key %s does not fit a %zu-byte key buffer",
                                  key->id, cap);
    buf[private_len_at] = (uint8_t)((writer.len - private_start) >> 24);
    buf[private_len_at + 1] = (uint8_t)((writer.len - private_start) >> 16);
    buf[private_len_at + 2] = (uint8_t)((writer.len - private_start) >> 8);
    buf[private_len_at + 3] = (uint8_t)(writer.len - private_start);
    *len_out = writer.len;
    return 0;
}

static int corrupt(const char *path, const char *why)
{
    return imgstore_error_set(IMGSTORE_EINVALID, "%s: truncated or corrupt OpenSSH key (%s)", path,
                              why);
}

/* The private section: checkints, one Ed25519 key matching `pub`, comment, padding. */
static int parse_private(imgstore_sign_key **out, const uint8_t *section, size_t len,
                         const uint8_t pub[IMGSTORE_SIGN__PUB_LEN], const char *path)
{
    imgstore_sign__reader reader;
    const uint8_t *type, *inner_pub, *secret, *comment;
    size_t type_len, inner_pub_len, secret_len, comment_len;
    uint32_t check1, check2;
    uint8_t pad;
    int err;

    if (len % BLOCK_SIZE != 0)
        return corrupt(path, "private section is not a whole number of blocks");
    imgstore_sign__reader_init(&reader, section, len);
    if (!imgstore_sign__take_u32(&reader, &check1) || !imgstore_sign__take_u32(&reader, &check2))
        return corrupt(path, "private section too short");
    /* Unencrypted, differing check bytes can only mean damage to the file. */
    if (check1 != check2)
        return corrupt(path, "check bytes differ");
    if (!imgstore_sign__take_string(&reader, &type, &type_len) ||
        !imgstore_sign__string_is(type, type_len, IMGSTORE_SIGN__ED25519))
        return corrupt(path, "private key is not the ssh-ed25519 key the header names");
    if (!imgstore_sign__take_string(&reader, &inner_pub, &inner_pub_len) ||
        inner_pub_len != IMGSTORE_SIGN__PUB_LEN ||
        !imgstore_sign__take_string(&reader, &secret, &secret_len) ||
        secret_len != IMGSTORE_SIGN__SECRET_LEN ||
        !imgstore_sign__take_string(&reader, &comment, &comment_len))
        return corrupt(path, "private key fields truncated");
    if (sodium_memcmp(inner_pub, pub, IMGSTORE_SIGN__PUB_LEN) != 0 ||
        sodium_memcmp(secret + IMGSTORE_SIGN__SEED_LEN, pub, IMGSTORE_SIGN__PUB_LEN) != 0)
        return corrupt(path, "private and public halves differ");
    for (uint8_t expected = 1; imgstore_sign__remaining(&reader) > 0; expected++) {
        if (expected >= BLOCK_SIZE || !imgstore_sign__take_u8(&reader, &pad) || pad != expected)
            return corrupt(path, "bad padding");
    }
    if ((err = imgstore_sign__check_comment(comment, comment_len, path)) < 0)
        return err;
    if ((err = imgstore_sign__key_from_seed(out, secret, (const char *)comment, comment_len)) < 0)
        return err;
    /* The seed decides the key; a file whose stored public half disagrees is damaged. */
    if (sodium_memcmp((*out)->pub.ed25519, pub, IMGSTORE_SIGN__PUB_LEN) != 0) {
        imgstore_sign_key_free(*out);
        *out = NULL;
        return corrupt(path, "seed does not derive the stored public key");
    }
    return 0;
}

int imgstore_sign__openssh_parse(imgstore_sign_key **out, const uint8_t *blob, size_t len,
                                 const char *path)
{
    imgstore_sign__reader reader;
    const uint8_t *magic, *cipher, *kdf, *kdf_options, *pub_blob, *section;
    size_t cipher_len, kdf_len, kdf_options_len, pub_blob_len, section_len;
    uint8_t pub[IMGSTORE_SIGN__PUB_LEN];
    uint32_t key_count;
    int err;

    *out = NULL;
    imgstore_sign__reader_init(&reader, blob, len);
    if (!imgstore_sign__take_bytes(&reader, &magic, AUTH_MAGIC_LEN) ||
        memcmp(magic, AUTH_MAGIC, AUTH_MAGIC_LEN) != 0)
        return corrupt(path, "no openssh-key-v1 magic");
    if (!imgstore_sign__take_string(&reader, &cipher, &cipher_len) ||
        !imgstore_sign__take_string(&reader, &kdf, &kdf_len) ||
        !imgstore_sign__take_string(&reader, &kdf_options, &kdf_options_len) ||
        !imgstore_sign__take_u32(&reader, &key_count))
        return corrupt(path, "header truncated");
    if (key_count != 1)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s holds %u keys; imgstore reads key files with exactly one",
                                  path, key_count);
    if (!imgstore_sign__take_string(&reader, &pub_blob, &pub_blob_len))
        return corrupt(path, "public key truncated");
    /* The type first: for an encrypted RSA key, "not Ed25519" is the answer that helps. */
    if ((err = imgstore_sign__pubkey_from_blob(pub, pub_blob, pub_blob_len, path)) < 0)
        return err;
    if (!imgstore_sign__string_is(cipher, cipher_len, "none"))
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s: passphrase-protected OpenSSH keys are not supported; use "
                                  "ssh-agent or an imgstore key",
                                  path);
    if (!imgstore_sign__string_is(kdf, kdf_len, "none") || kdf_options_len != 0)
        return corrupt(path, "key derivation set without a cipher");
    if (!imgstore_sign__take_string(&reader, &section, &section_len))
        return corrupt(path, "private section truncated");
    if (imgstore_sign__remaining(&reader) != 0)
        return corrupt(path, "data after the private section");
    return parse_private(out, section, section_len, pub, path);
}
