/*
 * Private key files: reading one (capped in size, into sodium_malloc memory because the text
 * of an unencrypted key is the secret), telling apart the formats imgstore reads from the
 * ones it refuses (PEM RSA/EC/DSA, PKCS#8, public keys given by mistake), and writing one
 * with mode 0600 atomically without ever replacing an existing file. The blob formats inside
 * the armour are openssh_key.c's and encrypted_key.c's.
 */
#include "sign/sign_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAX (64 * 1024) /* an Ed25519 key file is < 1 KiB; anything near this is not */

/* Read all of `path` into sodium_malloc memory. 0, IMGSTORE_ENOTFOUND/EINVALID/ERROR. */
static int read_key_file(char **out, size_t *len_out, const char *path)
{
    char *text = NULL;
    size_t used = 0;
    struct stat st;
    int fd = -1, err = 0;

    *out = NULL;
    /*
     * O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, so a wrong path
     * would hang the caller before the regular-file check below could refuse it. It changes
     * nothing for regular files, the only kind read past that check.
     */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
        err = imgstore_error_set(errno == ENOENT ? IMGSTORE_ENOTFOUND : IMGSTORE_ERROR,
                                 "cannot open key file %s: %s", path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s is not a regular file", path);
        goto done;
    }
    if ((text = sodium_malloc(KEYFILE_MAX + 1)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory reading %s", path);
        goto done;
    }
    /* Read one byte past the cap so that "exactly the cap" and "more" differ. */
    while (used <= KEYFILE_MAX) {
        ssize_t got = read(fd, text + used, KEYFILE_MAX + 1 - used);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err = imgstore_error_set(IMGSTORE_ERROR, "cannot read key file %s: %s", path,
                                     strerror(errno));
            goto done;
        }
        if (got == 0)
            break;
        used += (size_t)got;
    }
    if (used > KEYFILE_MAX) {
        err = imgstore_error_set(IMGSTORE_EINVALID, "%s is larger than %d KiB; not a key file",
                                 path, KEYFILE_MAX / 1024);
        goto done;
    }
    text[used] = '\0';
    *out = text;
    *len_out = used;
    text = NULL;
done:
    sodium_free(text);
    if (fd >= 0)
        close(fd);
    return err;
}

/* Name what a file that is not one of our formats is, so the refusal says what to do. */
static int refuse_foreign(const char *text, size_t len, const char *path)
{
    static const struct {
        const char *label;
        const char *kind;
    } pem[] = {
        {"RSA PRIVATE KEY", "an RSA key (PEM)"},
        {"EC PRIVATE KEY", "an ECDSA key (PEM)"},
        {"DSA PRIVATE KEY", "a DSA key (PEM)"},
        {"PRIVATE KEY", "a PKCS#8 key"},
        {"ENCRYPTED PRIVATE KEY", "an encrypted PKCS#8 key"},
        {"OPENSSH PUBLIC KEY", "a public key"},
        {"SSH2 PUBLIC KEY", "a public key"},
    };
    size_t pos = 0;

    for (size_t i = 0; i < sizeof(pem) / sizeof(pem[0]); i++) {
        if (imgstore_sign__has_begin(text, len, pem[i].label))
            return imgstore_error_set(IMGSTORE_EINVALID,
                                      "%s is %s; imgstore signs with Ed25519 keys in OpenSSH "
                                      "format only (ssh-keygen -t ed25519)",
                                      path, pem[i].kind);
    }
    while (pos < len &&
           (text[pos] == ' ' || text[pos] == '\t' || text[pos] == '\r' || text[pos] == '\n'))
        pos++;
    if (len - pos > 4 &&
        (strncmp(text + pos, "ssh-", 4) == 0 || strncmp(text + pos, "ecdsa-", 6) == 0 ||
         strncmp(text + pos, "sk-", 3) == 0))
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "%s holds a public key; give the private key file", path);
    return imgstore_error_set(IMGSTORE_EINVALID,
                              "%s is not a private key file (no '-----BEGIN OPENSSH PRIVATE "
                              "KEY-----' line)",
                              path);
}

int imgstore_sign_key_load(imgstore_sign_key **out, const char *path, const char *passphrase)
{
    char *text = NULL;
    uint8_t *blob = NULL;
    size_t text_len = 0, blob_len = 0;
    int err;

    if (out == NULL || path == NULL)
        return imgstore_error_set(IMGSTORE_EINVALID, "load key: no key file given");
    *out = NULL;
    if ((err = imgstore_sign__init()) < 0)
        goto done;
    if ((err = read_key_file(&text, &text_len, path)) < 0)
        goto done;
    if ((blob = sodium_malloc(KEYFILE_MAX)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory reading %s", path);
        goto done;
    }
    if (imgstore_sign__has_begin(text, text_len, IMGSTORE_SIGN__OPENSSH_LABEL)) {
        if ((err = imgstore_sign__dearmor(blob, KEYFILE_MAX, &blob_len, text, text_len,
                                          IMGSTORE_SIGN__OPENSSH_LABEL, path)) < 0)
            goto done;
        /* Unencrypted: a passphrase, if given, is not needed, as with ssh-keygen. */
        err = imgstore_sign__openssh_parse(out, blob, blob_len, path);
    } else if (imgstore_sign__has_begin(text, text_len, IMGSTORE_SIGN__ENCRYPTED_LABEL)) {
        if ((err = imgstore_sign__dearmor(blob, KEYFILE_MAX, &blob_len, text, text_len,
                                          IMGSTORE_SIGN__ENCRYPTED_LABEL, path)) < 0)
            goto done;
        err = imgstore_sign__encrypted_open(out, blob, blob_len, passphrase, path);
    } else {
        err = refuse_foreign(text, text_len, path);
    }
done:
    sodium_free(blob);
    sodium_free(text);
    return err;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t put = write(fd, data, len);

        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return -1;
        data += put;
        len -= (size_t)put;
    }
    return 0;
}

/* Make the rename or link itself durable: a crash must not lose a key the caller was told of. */
static int fsync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash == NULL   ? strdup(".")
                : slash == path ? strdup("/")
                                : imgstore_strfmt("%.*s", (int)(slash - path), path);
    int fd, rc = -1;

    if (dir == NULL)
        return -1;
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(dir);
    return rc;
}

/*
 * Temp file, write, fsync, then link() into place: unlike rename(), link() fails when the
 * target exists, so a key is never replaced even by a concurrent writer.
 */
static int write_file_atomic(const char *path, const char *data, size_t len)
{
    char *temp_path = NULL;
    int fd = -1, err = 0;

    if ((temp_path = imgstore_strfmt("%s.tmp-XXXXXX", path)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory writing %s", path);
        goto done;
    }
    if ((fd = mkstemp(temp_path)) < 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot create a file next to %s: %s", path,
                                 strerror(errno));
        free(temp_path);
        temp_path = NULL;
        goto done;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", temp_path, strerror(errno));
        goto done;
    }
    if (close(fd) != 0) {
        fd = -1;
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot write %s: %s", temp_path, strerror(errno));
        goto done;
    }
    fd = -1;
    if (link(temp_path, path) != 0) {
        err = imgstore_error_set(errno == EEXIST ? IMGSTORE_EEXISTS : IMGSTORE_ERROR,
                                 "cannot create key file %s: %s", path, strerror(errno));
        goto done;
    }
    if (fsync_parent(path) != 0) {
        err = imgstore_error_set(IMGSTORE_ERROR, "cannot sync the directory of %s: %s", path,
                                 strerror(errno));
        goto done;
    }
done:
    if (fd >= 0)
        close(fd);
    if (temp_path != NULL)
        unlink(temp_path);
    free(temp_path);
    return err;
}

int imgstore_sign_key_save(const imgstore_sign_key *key, const char *path, const char *passphrase)
{
    bool encrypt = passphrase != NULL && passphrase[0] != '\0';
    const char *label = encrypt ? IMGSTORE_SIGN__ENCRYPTED_LABEL : IMGSTORE_SIGN__OPENSSH_LABEL;
    uint8_t *plain = NULL, *sealed = NULL;
    size_t plain_len = 0, sealed_len = 0, text_len;
    char *text = NULL;
    struct stat st;
    int err;

    if (key == NULL || path == NULL)
        return imgstore_error_set(IMGSTORE_EINVALID, "save key: no key or path given");
    if (key->secret == NULL)
        return imgstore_error_set(IMGSTORE_EINVALID,
                                  "key %s is held by ssh-agent; there is no private key to save",
                                  key->id);
    /* Fail before the Argon2id work; write_file_atomic() still guards against a race. */
    if (lstat(path, &st) == 0)
        return imgstore_error_set(IMGSTORE_EEXISTS, "%s already exists; not overwriting a key",
                                  path);
    if ((err = imgstore_sign__init()) < 0)
        goto done;
    if ((plain = sodium_malloc(IMGSTORE_SIGN__KEYBLOB_MAX)) == NULL ||
        (sealed = sodium_malloc(2 * IMGSTORE_SIGN__KEYBLOB_MAX)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory writing %s", path);
        goto done;
    }
    if ((err = imgstore_sign__openssh_build(plain, IMGSTORE_SIGN__KEYBLOB_MAX, &plain_len, key)) <
        0)
        goto done;
    if (encrypt) {
        if ((err = imgstore_sign__encrypted_seal(sealed, 2 * IMGSTORE_SIGN__KEYBLOB_MAX,
                                                 &sealed_len, plain, plain_len, key, passphrase)) <
            0)
            goto done;
    } else {
        memcpy(sealed, plain, plain_len);
        sealed_len = plain_len;
    }
    text_len = imgstore_sign__armor_len(sealed_len, label);
    if ((text = sodium_malloc(text_len + 1)) == NULL) {
        err = imgstore_error_set(IMGSTORE_ERROR, "out of memory writing %s", path);
        goto done;
    }
    imgstore_sign__armor(text, sealed, sealed_len, label);
    err = write_file_atomic(path, text, text_len);
done:
    sodium_free(text);
    sodium_free(sealed);
    sodium_free(plain);
    return err;
}
