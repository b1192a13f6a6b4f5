/*
 * The sign module's parsers of outside bytes: OpenSSH public key lines, armored SSH
 * signatures (over a fixed message in the "imgstore" and "git" namespaces; the seed corpus
 * holds real `ssh-keygen -Y sign` output over it, so the verifying path is reached) and
 * private key files (OpenSSH and imgstore's encrypted format; no passphrase, so a fuzzed
 * KDF cost is never paid). A key that parses must round-trip its public line and sign
 * something its own public key verifies.
 */
#include "fuzz_util.h"
#include "sign/sign.h"

/* The message the corpus signatures sign (tests/fuzz/corpus/sign/README). */
static const char message[] = "imgstore fuzz corpus\n";

static void check_pubkey(const char *line)
{
    imgstore_sign_pubkey key, again;
    char *text = NULL, *text2 = NULL;
    int err;

    imgstore_error_clear();
    err = imgstore_sign_pubkey_parse(&key, line);

    FUZZ_CHECK_FAILURE_SAYS_WHY(err);
    if (err < 0)
        return;
    FUZZ_CHECK(imgstore_sign_pubkey_format(&text, &key) == 0);
    FUZZ_CHECK(imgstore_sign_pubkey_parse(&again, text) == 0);
    FUZZ_CHECK(imgstore_sign_pubkey_equal(&key, &again));
    FUZZ_CHECK(strcmp(key.comment, again.comment) == 0);
    FUZZ_CHECK(imgstore_sign_pubkey_format(&text2, &again) == 0);
    FUZZ_CHECK(strcmp(text, text2) == 0);
    free(text2);
    free(text);
}

static void check_signature(const char *armored, size_t len, const char *namespace)
{
    imgstore_sign_pubkey signer;
    int err;

    imgstore_error_clear();
    err =
        imgstore_sign_sshsig_verify(&signer, armored, len, namespace, message, sizeof(message) - 1);

    FUZZ_CHECK_FAILURE_SAYS_WHY(err);
    FUZZ_CHECK(err == 0 || err == IMGSTORE_EINVALID || err == IMGSTORE_EVERIFY);
}

static void check_key_file(const uint8_t *data, size_t size)
{
    imgstore_sign_key *key = NULL;
    imgstore_sign_pubkey pub, signer;
    char *sig = NULL;
    int err;

    imgstore_error_clear();
    err = imgstore_sign_key_load(&key, fuzz_temp_file(data, size), NULL);

    FUZZ_CHECK_FAILURE_SAYS_WHY(err);
    if (err < 0) {
        FUZZ_CHECK(key == NULL);
        return;
    }
    imgstore_sign_key_public(&pub, key);
    FUZZ_CHECK(strncmp(imgstore_sign_key_id(key), "SHA256:", 7) == 0);
    FUZZ_CHECK(imgstore_sign_sshsig(&sig, key, IMGSTORE_SIGN_NAMESPACE, message,
                                    sizeof(message) - 1) == 0);
    /* a key file whose public half is not its private key's must not have loaded */
    FUZZ_CHECK(imgstore_sign_sshsig_verify(&signer, sig, strlen(sig), IMGSTORE_SIGN_NAMESPACE,
                                           message, sizeof(message) - 1) == 0);
    FUZZ_CHECK(imgstore_sign_pubkey_equal(&signer, &pub));
    free(sig);
    imgstore_sign_key_free(key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);

    FUZZ_CHECK(text != NULL);
    memcpy(text, data, size);
    text[size] = '\0';
    check_pubkey(text);
    check_signature(text, size, IMGSTORE_SIGN_NAMESPACE);
    check_signature(text, size, "git");
    check_key_file(data, size);
    free(text);
    return 0;
}
