/*
 * SSH signatures (OpenSSH's PROTOCOL.sshsig): signing produces what `ssh-keygen -Y sign`
 * produces, byte for byte (Ed25519 is deterministic), and verifying accepts what it produces,
 * parsing the armour and the blob strictly since both arrive from outside. Which keys to
 * trust is the caller's decision: verification reports the signer and nothing more.
 *
 *     blob:        "SSHSIG" uint32(1) string(public key) string(namespace) string(reserved)
 *                  string(hash algorithm) string(string("ssh-ed25519") string(signature))
 *     signed data: "SSHSIG" string(namespace) string(reserved = "") string(hash algorithm)
 *                  string(H(message))
 */
#include "sign/sign_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LABEL       "SSH SIGNATURE"
#define SIG_MAGIC       "SSHSIG"
#define SIG_MAGIC_LEN   6
#define SIG_VERSION     1
#define WHAT            "SSH signature"
/* Signed data holds the magic, a namespace of at most 255 bytes, a hash name and a digest. */
#define SIGNED_DATA_MAX 512

static int check_namespace(const char *namespace)
{
    size_t len;

    if (namespace == NULL || namespace[0] == '\0')
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: empty namespace");
    len = strlen(namespace);
    if (len > IMGSTORE_SIGN__NAMESPACE_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "SSH signature: namespace longer than %d bytes",
                                  IMGSTORE_SIGN__NAMESPACE_MAX);
    return 0;
}

static void put_signed_data(imgstore_sign__writer *writer, const uint8_t *namespace,
                            size_t namespace_len, const uint8_t *reserved, size_t reserved_len,
                            const char *hash_name, const uint8_t *digest, size_t digest_len)
{
    imgstore_sign__put_bytes(writer, SIG_MAGIC, SIG_MAGIC_LEN);
    imgstore_sign__put_string(writer, namespace, namespace_len);
    imgstore_sign__put_string(writer, reserved, reserved_len);
    imgstore_sign__put_cstring(writer, hash_name);
    imgstore_sign__put_string(writer, digest, digest_len);
}

int imgstore_sign_sshsig(char **out, const imgstore_sign_key *key, const char *namespace,
                         const void *msg, size_t len)
{
    uint8_t digest[crypto_hash_sha512_BYTES], sig[IMGSTORE_SIGN__SIG_LEN];
    uint8_t signed_data[SIGNED_DATA_MAX], blob[IMGSTORE_SIGN_ARMOR_MAX];
    uint8_t pub_blob[IMGSTORE_SIGN__PUBBLOB_LEN], sig_blob[IMGSTORE_SIGN__SIGBLOB_LEN];
    imgstore_sign__writer writer;
    char *armored;
    int err;

    if (out == NULL || key == NULL || (msg == NULL && len > 0))
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: nothing to sign");
    *out = NULL;
    if ((err = check_namespace(namespace)) < 0 || (err = imgstore_sign__init()) < 0)
        return err;
    crypto_hash_sha512(digest, len > 0 ? msg : (const void *)"", len);
    imgstore_sign__writer_init(&writer, signed_data, sizeof(signed_data));
    put_signed_data(&writer, (const uint8_t *)namespace, strlen(namespace), NULL, 0, "sha512",
                    digest, sizeof(digest));
    if ((err = imgstore_sign__sign_raw(sig, key, signed_data, writer.len)) < 0)
        return err;

    imgstore_sign__pubkey_blob(pub_blob, key->pub.ed25519);
    imgstore_sign__writer_init(&writer, sig_blob, sizeof(sig_blob));
    imgstore_sign__put_cstring(&writer, IMGSTORE_SIGN__ED25519);
    imgstore_sign__put_string(&writer, sig, sizeof(sig));
    imgstore_sign__writer_init(&writer, blob, sizeof(blob));
    imgstore_sign__put_bytes(&writer, SIG_MAGIC, SIG_MAGIC_LEN);
    imgstore_sign__put_u32(&writer, SIG_VERSION);
    imgstore_sign__put_string(&writer, pub_blob, sizeof(pub_blob));
    imgstore_sign__put_cstring(&writer, namespace);
    imgstore_sign__put_string(&writer, NULL, 0); /* reserved */
    imgstore_sign__put_cstring(&writer, "sha512");
    imgstore_sign__put_string(&writer, sig_blob, sizeof(sig_blob));
    if ((armored = malloc(imgstore_sign__armor_len(writer.len, SIG_LABEL) + 1)) == NULL)
        return imgstore_error_set(IMGSTORE_ERROR, "SSH signature: out of memory");
    imgstore_sign__armor(armored, blob, writer.len, SIG_LABEL);
    *out = armored;
    return 0;
}

/* The parsed fields of an SSHSIG blob; pointers borrow from the decoded blob. */
typedef struct {
    uint8_t pub[IMGSTORE_SIGN__PUB_LEN];
    const uint8_t *namespace, *reserved, *hash_name, *sig;
    size_t namespace_len, reserved_len, hash_name_len;
} sshsig_fields;

static int parse_sig_blob(const uint8_t **sig_out, const uint8_t *sig_blob, size_t len)
{
    imgstore_sign__reader reader;
    const uint8_t *type, *sig;
    size_t type_len, sig_len;
    char quoted[96];

    imgstore_sign__reader_init(&reader, sig_blob, len);
    if (!imgstore_sign__take_string(&reader, &type, &type_len))
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: signature truncated");
    if (!imgstore_sign__string_is(type, type_len, IMGSTORE_SIGN__ED25519)) {
        imgstore_sign__quote(quoted, sizeof(quoted), type, type_len);
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "SSH signature: signature type '%s' does not match the "
                                  "ssh-ed25519 key",
                                  quoted);
    }
    if (!imgstore_sign__take_string(&reader, &sig, &sig_len) || sig_len != IMGSTORE_SIGN__SIG_LEN ||
        imgstore_sign__remaining(&reader) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "SSH signature: malformed Ed25519 signature (not 64 bytes)");
    *sig_out = sig;
    return 0;
}

static int parse_blob(sshsig_fields *out, const uint8_t *blob, size_t len)
{
    imgstore_sign__reader reader;
    const uint8_t *magic, *pub_blob, *sig_blob;
    size_t pub_blob_len, sig_blob_len;
    uint32_t version;
    int err;

    imgstore_sign__reader_init(&reader, blob, len);
    if (!imgstore_sign__take_bytes(&reader, &magic, SIG_MAGIC_LEN) ||
        memcmp(magic, SIG_MAGIC, SIG_MAGIC_LEN) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: no SSHSIG magic");
    if (!imgstore_sign__take_u32(&reader, &version))
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: truncated after magic");
    if (version != SIG_VERSION)
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: unsupported version %u",
                                  (unsigned)version);
    if (!imgstore_sign__take_string(&reader, &pub_blob, &pub_blob_len) ||
        !imgstore_sign__take_string(&reader, &out->namespace, &out->namespace_len) ||
        !imgstore_sign__take_string(&reader, &out->reserved, &out->reserved_len) ||
        !imgstore_sign__take_string(&reader, &out->hash_name, &out->hash_name_len) ||
        !imgstore_sign__take_string(&reader, &sig_blob, &sig_blob_len))
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: blob truncated");
    if (imgstore_sign__remaining(&reader) != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: data after the signature");
    /*
     * ssh-keygen writes the reserved field empty and verifies as if it were, whatever it holds;
     * refusing content keeps one signature from having many valid encodings.
     */
    if (out->reserved_len != 0)
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: reserved field not empty");
    if ((err = imgstore_sign__pubkey_from_blob(out->pub, pub_blob, pub_blob_len,
                                               "SSH signature key")) < 0)
        return err;
    return parse_sig_blob(&out->sig, sig_blob, sig_blob_len);
}

int imgstore_sign_sshsig_verify(imgstore_sign_pubkey *signer_out, const char *armored,
                                size_t armored_len, const char *namespace, const void *msg,
                                size_t len)
{
    uint8_t blob[IMGSTORE_SIGN_ARMOR_MAX], signed_data[SIGNED_DATA_MAX];
    uint8_t digest[crypto_hash_sha512_BYTES];
    char quoted[96], key_id[IMGSTORE_SIGN_KEYID_MAX];
    imgstore_sign_pubkey signer;
    imgstore_sign__writer writer;
    sshsig_fields fields;
    const char *hash_name;
    size_t blob_len, digest_len;
    int err;

    if (signer_out == NULL || armored == NULL || (msg == NULL && len > 0))
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: nothing to verify");
    if ((err = check_namespace(namespace)) < 0 || (err = imgstore_sign__init()) < 0)
        return err;
    if (armored_len > IMGSTORE_SIGN_ARMOR_MAX)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "SSH signature: %zu bytes, more than the %d an Ed25519 "
                                  "signature can take",
                                  armored_len, IMGSTORE_SIGN_ARMOR_MAX);
    if ((err = imgstore_sign__dearmor(blob, sizeof(blob), &blob_len, armored, armored_len,
                                      SIG_LABEL, WHAT)) < 0)
        return err;
    if ((err = parse_blob(&fields, blob, blob_len)) < 0)
        return err;
    memset(&signer, 0, sizeof(signer));
    memcpy(signer.ed25519, fields.pub, sizeof(fields.pub));
    imgstore_sign_pubkey_fingerprint(key_id, &signer);

    /* A signature for another namespace (a git commit, say) must not pass as a manifest's. */
    if (!imgstore_sign__string_is(fields.namespace, fields.namespace_len, namespace)) {
        imgstore_sign__quote(quoted, sizeof(quoted), fields.namespace, fields.namespace_len);
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "SSH signature by %s is for namespace '%s', not '%s'", key_id,
                                  quoted, namespace);
    }
    if (imgstore_sign__string_is(fields.hash_name, fields.hash_name_len, "sha512")) {
        hash_name = "sha512";
        crypto_hash_sha512(digest, len > 0 ? msg : (const void *)"", len);
        digest_len = crypto_hash_sha512_BYTES;
    } else if (imgstore_sign__string_is(fields.hash_name, fields.hash_name_len, "sha256")) {
        hash_name = "sha256"; /* ssh-keygen -Y sign -O hashalg=sha256 */
        crypto_hash_sha256(digest, len > 0 ? msg : (const void *)"", len);
        digest_len = crypto_hash_sha256_BYTES;
    } else {
        imgstore_sign__quote(quoted, sizeof(quoted), fields.hash_name, fields.hash_name_len);
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "SSH signature: unsupported hash algorithm '%s'", quoted);
    }
    imgstore_sign__writer_init(&writer, signed_data, sizeof(signed_data));
    put_signed_data(&writer, fields.namespace, fields.namespace_len, NULL, 0, hash_name, digest,
                    digest_len);
    if (writer.overflow)
        return imgstore_error_set(IMGSTORE_EINVALID, "SSH signature: fields too long");
    if (crypto_sign_verify_detached(fields.sig, signed_data, writer.len, fields.pub) != 0)
        return imgstore_error_set(IMGSTORE_EVERIFY,
                                  "SSH signature by %s does not verify: the message or the "
                                  "signature was altered",
                                  key_id);
    *signer_out = signer;
    return 0;
}
