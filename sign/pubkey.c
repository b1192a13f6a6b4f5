/*
 * Public keys as operators see them: OpenSSH "ssh-ed25519 AAAA... comment" lines, the wire
 * blob inside them, and the SHA256 fingerprint that `ssh-keygen -l` prints and imgstore uses
 * as the key id. Also the libsodium initialisation every other file relies on. Private keys,
 * files and signatures live elsewhere.
 */
#include "sign/sign_internal.h"

#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * An Ed25519 blob is 68 base64 characters, but a line whose label was edited may carry an
 * RSA blob (~720 characters at 4096 bits); decoding it lets the refusal name its real type.
 */
#define PUBKEY_LINE_B64_MAX 2048

int imgstore_sign__init(void)
{
    static atomic_bool ready;

    /* sodium_init() is itself thread-safe; the flag only skips its lock on the hot path. */
    if (atomic_load(&ready))
        return 0;
    if (sodium_init() < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "libsodium failed to initialise");
    atomic_store(&ready, true);
    return 0;
}

void imgstore_sign__pubkey_blob(uint8_t out[IMGSTORE_SIGN__PUBBLOB_LEN],
                                const uint8_t pub[IMGSTORE_SIGN__PUB_LEN])
{
    imgstore_sign__writer writer;

    imgstore_sign__writer_init(&writer, out, IMGSTORE_SIGN__PUBBLOB_LEN);
    imgstore_sign__put_cstring(&writer, IMGSTORE_SIGN__ED25519);
    imgstore_sign__put_string(&writer, pub, IMGSTORE_SIGN__PUB_LEN);
}

int imgstore_sign__pubkey_from_blob(uint8_t pub_out[IMGSTORE_SIGN__PUB_LEN], const uint8_t *blob,
                                    size_t len, const char *what)
{
    imgstore_sign__reader reader;
    const uint8_t *type, *pub;
    size_t type_len, pub_len;
    char quoted[96];

    imgstore_sign__reader_init(&reader, blob, len);
    if (!imgstore_sign__take_string(&reader, &type, &type_len))
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: truncated public key", what);
    if (!imgstore_sign__string_is(type, type_len, IMGSTORE_SIGN__ED25519)) {
        imgstore_sign__quote(quoted, sizeof(quoted), type, type_len);
        return imgstore_error_set(
            IMGSTORE_EINVALID, "%s is an %s key; imgstore signs with Ed25519 only", what, quoted);
    }
    if (!imgstore_sign__take_string(&reader, &pub, &pub_len) || pub_len != IMGSTORE_SIGN__PUB_LEN ||
        imgstore_sign__remaining(&reader) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s: malformed ssh-ed25519 public key (not 32 key bytes)", what);
    memcpy(pub_out, pub, IMGSTORE_SIGN__PUB_LEN);
    return 0;
}

int imgstore_sign__check_comment(const uint8_t *comment, size_t len, const char *what)
{
    if (len >= IMGSTORE_SIGN_COMMENT_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID, "%s: comment longer than %d bytes", what,
                                  IMGSTORE_SIGN_COMMENT_MAX - 1);
    /* The comment ends up on an OpenSSH public key line, where a newline would split it. */
    for (size_t i = 0; i < len; i++) {
        if (comment[i] < 0x20 || comment[i] == 0x7f)
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "%s: comment contains a control character (0x%02x)", what,
                                      comment[i]);
    }
    return 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Fields end at blanks and at the line end, so a line read with fgets() parses as is. */
static bool ends_field(char c)
{
    return c == '\0' || is_blank(c) || c == '\n' || c == '\r';
}

int imgstore_sign_pubkey_parse(imgstore_sign_pubkey *out, const char *line)
{
    uint8_t blob[PUBKEY_LINE_B64_MAX / 4 * 3];
    imgstore_sign_pubkey parsed;
    const char *type, *b64, *comment;
    size_t type_len, b64_len, comment_len, blob_len;
    char quoted[96];
    int err;

    if (out == NULL || line == NULL)
        return imgstore_error_set(IMGSTORE_EINVALID, "public key: no line given");
    memset(&parsed, 0, sizeof(parsed));
    for (type = line; is_blank(*type); type++)
        ;
    for (type_len = 0; !ends_field(type[type_len]); type_len++)
        ;
    for (b64 = type + type_len; is_blank(*b64); b64++)
        ;
    for (b64_len = 0; !ends_field(b64[b64_len]); b64_len++)
        ;
    for (comment = b64 + b64_len; is_blank(*comment); comment++)
        ;
    comment_len = strlen(comment);
    while (comment_len > 0 &&
           (comment[comment_len - 1] == '\n' || comment[comment_len - 1] == '\r' ||
            is_blank(comment[comment_len - 1])))
        comment_len--;

    if (type_len == 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "public key: empty line");
    if (!imgstore_sign__string_is((const uint8_t *)type, type_len, IMGSTORE_SIGN__ED25519)) {
        imgstore_sign__quote(quoted, sizeof(quoted), (const uint8_t *)type, type_len);
        if (type_len > 4 && (strncmp(type, "ssh-", 4) == 0 || strncmp(type, "ecdsa-", 6) == 0 ||
                             strncmp(type, "sk-", 3) == 0))
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "public key: %s keys are not supported; imgstore uses "
                                      "Ed25519 only",
                                      quoted);
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "public key: '%s' is not a key type; expected 'ssh-ed25519 "
                                  "AAAA... [comment]'",
                                  quoted);
    }
    if (b64_len == 0 || b64_len > PUBKEY_LINE_B64_MAX ||
        sodium_base642bin(blob, sizeof(blob), b64, b64_len, NULL, &blob_len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "public key: bad base64 key data");
    if ((err = imgstore_sign__pubkey_from_blob(parsed.ed25519, blob, blob_len, "public key")) < 0)
        return err;
    if ((err = imgstore_sign__check_comment((const uint8_t *)comment, comment_len, "public key")) <
        0)
        return err;
    memcpy(parsed.comment, comment, comment_len);
    parsed.comment[comment_len] = '\0';
    *out = parsed;
    return 0;
}

int imgstore_sign_pubkey_format(char **out, const imgstore_sign_pubkey *pubkey)
{
    uint8_t blob[IMGSTORE_SIGN__PUBBLOB_LEN];
    char b64[sodium_base64_ENCODED_LEN(IMGSTORE_SIGN__PUBBLOB_LEN, sodium_base64_VARIANT_ORIGINAL)];
    size_t comment_len;
    char *line;
    int err;

    if (out == NULL || pubkey == NULL)
        return imgstore_error_set(IMGSTORE_EINVALID, "public key: nothing to format");
    *out = NULL;
    comment_len = strnlen(pubkey->comment, sizeof(pubkey->comment));
    if (comment_len == sizeof(pubkey->comment))
        return imgstore_error_set(IMGSTORE_EINVALID, "public key: comment is not terminated");
    /* Callers may fill the struct themselves; a newline would split the line we promise. */
    if ((err = imgstore_sign__check_comment((const uint8_t *)pubkey->comment, comment_len,
                                            "public key")) < 0)
        return err;
    imgstore_sign__pubkey_blob(blob, pubkey->ed25519);
    sodium_bin2base64(b64, sizeof(b64), blob, sizeof(blob), sodium_base64_VARIANT_ORIGINAL);
    line = imgstore_strfmt("%s %s%s%.*s", IMGSTORE_SIGN__ED25519, b64, comment_len > 0 ? " " : "",
                           (int)comment_len, pubkey->comment);
    if (line == NULL)
        return imgstore_error_set(IMGSTORE_ERROR, "public key: out of memory");
    *out = line;
    return 0;
}

void imgstore_sign_pubkey_fingerprint(char out[IMGSTORE_SIGN_KEYID_MAX],
                                      const imgstore_sign_pubkey *pubkey)
{
    uint8_t blob[IMGSTORE_SIGN__PUBBLOB_LEN];
    uint8_t digest[crypto_hash_sha256_BYTES];

    imgstore_sign__pubkey_blob(blob, pubkey->ed25519);
    crypto_hash_sha256(digest, blob, sizeof(blob));
    memcpy(out, "SHA256:", 7);
    /* 43 characters + NUL after the prefix: the 64-byte cap is sized for exactly this. */
    sodium_bin2base64(out + 7, IMGSTORE_SIGN_KEYID_MAX - 7, digest, sizeof(digest),
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

bool imgstore_sign_pubkey_equal(const imgstore_sign_pubkey *a, const imgstore_sign_pubkey *b)
{
    /* Identity is the key material; comments are labels and may differ between copies. */
    return sodium_memcmp(a->ed25519, b->ed25519, IMGSTORE_SIGN__PUB_LEN) == 0;
}
