/*
 * imgstore's passphrase-protected key format. OpenSSH encrypts keys with bcrypt-pbkdf and
 * AES, neither in libsodium, so a protected key is instead an unencrypted openssh-key-v1 blob
 * sealed with crypto_secretbox (XSalsa20-Poly1305) under a key from crypto_pwhash (Argon2id).
 * The blob, before armour ("IMGSTORE ENCRYPTED PRIVATE KEY"), in SSH wire encoding:
 *
 *     byte[13] "imgstore-key\0"      uint32 version = 1
 *     string   kdf = "argon2id13"    uint64 opslimit    uint64 memlimit    string salt (16)
 *     string   cipher = "xsalsa20-poly1305"             string nonce (24)
 *     string   public key blob (in clear, so the key id is readable without the passphrase)
 *     string   secretbox(openssh-key-v1 blob)
 *
 * The KDF cost is recorded so that later versions may raise it; reading caps it so a crafted
 * file cannot make loading take minutes or gigabytes. Armour and file I/O are keyfile.c's.
 */
#include "sign/sign_internal.h"

#include <sodium.h>
#include <string.h>

#define MAGIC       "imgstore-key"
#define MAGIC_LEN   13 /* with its NUL */
#define VERSION     1
#define KDF_NAME    "argon2id13"
#define CIPHER_NAME "xsalsa20-poly1305"
#define OPS_CAP     16 /* eight times OPSLIMIT_SENSITIVE's 4: room to grow, not a DoS */

int imgstore_sign__encrypted_seal(uint8_t *buf, size_t cap, size_t *len_out, const uint8_t *plain,
                                  size_t plain_len, const imgstore_sign_key *key,
                                  const char *passphrase)
{
    uint8_t salt[crypto_pwhash_SALTBYTES], nonce[crypto_secretbox_NONCEBYTES];
    uint8_t pub_blob[IMGSTORE_SIGN__PUBBLOB_LEN];
    uint64_t opslimit = crypto_pwhash_OPSLIMIT_INTERACTIVE;
    uint64_t memlimit = crypto_pwhash_MEMLIMIT_INTERACTIVE;
    imgstore_sign__writer writer;
    uint8_t *box_key = NULL;
    size_t box_at;
    int err = 0;

    randombytes_buf(salt, sizeof(salt));
    randombytes_buf(nonce, sizeof(nonce));
    imgstore_sign__pubkey_blob(pub_blob, key->pub.ed25519);
    if ((box_key = sodium_malloc(crypto_secretbox_KEYBYTES)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory for a key");
        goto done;
    }
    if (crypto_pwhash(box_key, crypto_secretbox_KEYBYTES, passphrase, strlen(passphrase), salt,
                      opslimit, (size_t)memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "Argon2id failed (out of memory for %llu MiB?)",
                                 (unsigned long long)(memlimit >> 20));
        goto done;
    }
    imgstore_sign__writer_init(&writer, buf, cap);
    imgstore_sign__put_bytes(&writer, MAGIC, MAGIC_LEN);
    imgstore_sign__put_u32(&writer, VERSION);
    imgstore_sign__put_cstring(&writer, KDF_NAME);
    imgstore_sign__put_u64(&writer, opslimit);
    imgstore_sign__put_u64(&writer, memlimit);
    imgstore_sign__put_string(&writer, salt, sizeof(salt));
    imgstore_sign__put_cstring(&writer, CIPHER_NAME);
    imgstore_sign__put_string(&writer, nonce, sizeof(nonce));
    imgstore_sign__put_string(&writer, pub_blob, sizeof(pub_blob));
    imgstore_sign__put_u32(&writer, (uint32_t)(crypto_secretbox_MACBYTES + plain_len));
    box_at = writer.len;
    /* Reserve the box in place: the plaintext is encrypted straight into the output. */
    if (!writer.overflow && crypto_secretbox_MACBYTES + plain_len <= cap - writer.len)
        writer.len += crypto_secretbox_MACBYTES + plain_len;
    else
        writer.overflow = true;
    if (writer.overflow) {
        err = imgstore_error_set(IMGSTORE_ERROR, "encrypted key does not fit %zu bytes", cap);
        goto done;
    }
    crypto_secretbox_easy(buf + box_at, plain, plain_len, nonce, box_key);
    *len_out = writer.len;
done:
    sodium_free(box_key);
    return err;
}

static int malformed(const char *path, const char *why)
{
    return imgstore_error_set(IMGSTORE_EINVALID, "%s: truncated or corrupt imgstore key (%s)", path,
                              why);
}

int imgstore_sign__encrypted_open(imgstore_sign_key **out, const uint8_t *blob, size_t len,
                                  const char *passphrase, const char *path)
{
    imgstore_sign__reader reader;
    const uint8_t *magic, *kdf, *salt, *cipher, *nonce, *pub_blob, *box;
    size_t kdf_len, salt_len, cipher_len, nonce_len, pub_blob_len, box_len, plain_len;
    uint8_t pub[IMGSTORE_SIGN__PUB_LEN];
    uint64_t opslimit, memlimit;
    uint8_t *box_key = NULL, *plain = NULL;
    uint32_t version;
    int err = 0;

    *out = NULL;
    imgstore_sign__reader_init(&reader, blob, len);
    if (!imgstore_sign__take_bytes(&reader, &magic, MAGIC_LEN) ||
        memcmp(magic, MAGIC, MAGIC_LEN) != 0 || !imgstore_sign__take_u32(&reader, &version))
        return malformed(path, "no imgstore-key magic");
    if (version != VERSION)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s: imgstore key format version %u is not supported (only %d)",
                                  path, (unsigned)version, VERSION);
    if (!imgstore_sign__take_string(&reader, &kdf, &kdf_len) ||
        !imgstore_sign__take_u64(&reader, &opslimit) ||
        !imgstore_sign__take_u64(&reader, &memlimit) ||
        !imgstore_sign__take_string(&reader, &salt, &salt_len) ||
        !imgstore_sign__take_string(&reader, &cipher, &cipher_len) ||
        !imgstore_sign__take_string(&reader, &nonce, &nonce_len) ||
        !imgstore_sign__take_string(&reader, &pub_blob, &pub_blob_len) ||
        !imgstore_sign__take_string(&reader, &box, &box_len))
        return malformed(path, "header truncated");
    if (imgstore_sign__remaining(&reader) != 0)
        return malformed(path, "data after the encrypted key");
    if (!imgstore_sign__string_is(kdf, kdf_len, KDF_NAME) ||
        !imgstore_sign__string_is(cipher, cipher_len, CIPHER_NAME))
        return malformed(path, "unknown key derivation or cipher");
    if (opslimit < crypto_pwhash_argon2id_OPSLIMIT_MIN || opslimit > OPS_CAP ||
        memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN ||
        memlimit > crypto_pwhash_MEMLIMIT_SENSITIVE)
        return malformed(path, "Argon2id cost out of range");
    if (salt_len != crypto_pwhash_SALTBYTES || nonce_len != crypto_secretbox_NONCEBYTES ||
        box_len < crypto_secretbox_MACBYTES ||
        box_len > crypto_secretbox_MACBYTES + IMGSTORE_SIGN__KEYBLOB_MAX)
        return malformed(path, "bad salt, nonce or ciphertext length");
    if ((err = imgstore_sign__pubkey_from_blob(pub, pub_blob, pub_blob_len, path)) < 0)
        return err;
    if (passphrase == NULL || passphrase[0] == '\0')
        return imgstore_error_set(IMGSTORE_EINVALID, "%s is encrypted; a passphrase is required",
                                  path);

    plain_len = box_len - crypto_secretbox_MACBYTES;
    if ((box_key = sodium_malloc(crypto_secretbox_KEYBYTES)) == NULL ||
        (plain = sodium_malloc(plain_len > 0 ? plain_len : 1)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory for a key");
        goto done;
    }
    if (crypto_pwhash(box_key, crypto_secretbox_KEYBYTES, passphrase, strlen(passphrase), salt,
                      opslimit, (size_t)memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "Argon2id failed (out of memory for %llu MiB?)",
                                 (unsigned long long)(memlimit >> 20));
        goto done;
    }
    /* Poly1305 cannot tell a wrong passphrase from a damaged file; the former is likelier. */
    if (crypto_secretbox_open_easy(plain, box, box_len, nonce, box_key) != 0) {
        err = imgstore_error_set(IMGSTORE_EVERIFY, "wrong passphrase for %s", path);
        goto done;
    }
    if ((err = imgstore_sign__openssh_parse(out, plain, plain_len, path)) < 0)
        goto done;
    if (sodium_memcmp((*out)->pub.ed25519, pub, IMGSTORE_SIGN__PUB_LEN) != 0) {
        imgstore_sign_key_free(*out);
        *out = NULL;
        err = malformed(path, "public key differs from the encrypted one");
        goto done;
    }
done:
    sodium_free(plain);
    sodium_free(box_key);
    return err;
}
