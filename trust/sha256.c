/*
 * SHA-256 for image bytes. OpenSSL's libcrypto (already linked through libgit2 and libcurl)
 * uses the CPU's SHA extensions: measured 1,620 MB/s here against ~370 MiB/s for
 * libsodium's portable code (`openssl speed -evp sha256`), and every pushed and served byte
 * is hashed, so this is the one SHA-256 of the project.
 */
#include "trust/trust.h"

#include <openssl/evp.h>
#include <stdlib.h>

struct imgstore_sha256 {
    EVP_MD_CTX *md;
};

int imgstore_sha256_new(imgstore_sha256 **out)
{
    imgstore_sha256 *ctx = calloc(1, sizeof(*ctx));

    *out = NULL;
    if (!ctx || !(ctx->md = EVP_MD_CTX_new()) ||
        EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        imgstore_sha256_free(ctx);
        return imgstore_error_set(IMGSTORE_ERROR, "sha256: cannot create a digest context");
    }
    *out = ctx;
    return 0;
}

void imgstore_sha256_update(imgstore_sha256 *ctx, const void *buf, size_t len)
{
    EVP_DigestUpdate(ctx->md, buf, len);
}

void imgstore_sha256_final_hex(imgstore_sha256 *ctx, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char digest[32];
    unsigned int len = 0;

    EVP_DigestFinal_ex(ctx->md, digest, &len);
    for (unsigned int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
    EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL);
}

void imgstore_sha256_free(imgstore_sha256 *ctx)
{
    if (!ctx)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

int imgstore_sha256_hex(char out[65], const void *buf, size_t len)
{
    imgstore_sha256 *sha = NULL;
    int err;

    if ((err = imgstore_sha256_new(&sha)) < 0)
        return err;
    imgstore_sha256_update(sha, buf, len);
    imgstore_sha256_final_hex(sha, out);
    imgstore_sha256_free(sha);
    return 0;
}
