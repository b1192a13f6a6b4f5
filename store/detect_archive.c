/*
 * Initrds and archives: cpio (what Linux unpacks as an initramfs) and tar, plain or compressed.
 * Only gzip is opened, by inflating the first few kilobytes with zlib to see whether a cpio or
 * tar header comes out. xz, zstd, lz4 and bzip2 streams are not decompressed (the store links no
 * library for them); such a stream among boot files is, in practice, an initramfs, so it is
 * reported as a compressed cpio on that assumption. Nothing here lists or extracts members.
 */
#include "store/detect_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ustar (POSIX.1-1988) header: magic at 257, checksum at 148. */
#define TAR_BLOCK         512
#define TAR_MAGIC_OFFSET  257
#define TAR_CHECKSUM      148
#define TAR_CHECKSUM_SIZE 8
/* Enough inflated bytes for a tar header; a cpio header needs only 6. */
#define GZIP_PEEK         TAR_BLOCK
/* Input fed to zlib per step, and in all: a sane gzip yields GZIP_PEEK bytes long before. */
#define GZIP_INPUT_STEP   (16u * 1024)
#define GZIP_INPUT_MAX    (1024u * 1024)

typedef struct {
    const uint8_t *magic;
    size_t len;
    const char *compression;
} stream_magic;

static const uint8_t xz_magic[] = {0xFD, '7', 'z', 'X', 'Z', 0x00};
static const uint8_t zstd_magic[] = {0x28, 0xB5, 0x2F, 0xFD};
static const uint8_t lz4_legacy_magic[] = {0x02, 0x21, 0x4C, 0x18};
static const uint8_t lz4_frame_magic[] = {0x04, 0x22, 0x4D, 0x18};

static const stream_magic compressed_streams[] = {
    {xz_magic, sizeof(xz_magic), "xz"},
    {zstd_magic, sizeof(zstd_magic), "zstd"},
    {lz4_legacy_magic, sizeof(lz4_legacy_magic), "lz4"},
    {lz4_frame_magic, sizeof(lz4_frame_magic), "lz4"},
};

static void set_result(imgstore_file_info *info, const char *kind, const char *format,
                       const char *compression)
{
    imgstore_store__detect_set(info->kind, sizeof(info->kind), kind);
    imgstore_store__detect_set(info->format, sizeof(info->format), format);
    imgstore_store__detect_set(info->compression, sizeof(info->compression), compression);
}

/* newc ("070701"), newc with checksums ("070702") and portable odc ("070707"). */
static bool is_cpio(const uint8_t *buf, size_t len)
{
    return len >= 6 && (memcmp(buf, "070701", 6) == 0 || memcmp(buf, "070702", 6) == 0 ||
                        memcmp(buf, "070707", 6) == 0);
}

static bool is_tar(const uint8_t *buf, size_t len)
{
    return len > TAR_MAGIC_OFFSET + 5 && memcmp(buf + TAR_MAGIC_OFFSET, "ustar", 5) == 0;
}

/* A bzip2 stream: "BZh", block size '1'-'9', then a block or the end-of-stream marker. */
static bool is_bzip2(const uint8_t *buf, size_t len)
{
    static const uint8_t block[6] = {0x31, 0x41, 0x59, 0x26, 0x53, 0x59};
    static const uint8_t end[6] = {0x17, 0x72, 0x45, 0x38, 0x50, 0x90};

    return len >= 10 && memcmp(buf, "BZh", 3) == 0 && buf[3] >= '1' && buf[3] <= '9' &&
           (memcmp(buf + 4, block, 6) == 0 || memcmp(buf + 4, end, 6) == 0);
}

/* The ustar checksum: the header's byte sum with the checksum field counted as spaces. */
static bool tar_checksum_ok(const uint8_t *header)
{
    uint64_t sum = 0, stored = 0;
    size_t i = TAR_CHECKSUM;

    for (size_t b = 0; b < TAR_BLOCK; b++)
        sum += (b >= TAR_CHECKSUM && b < TAR_CHECKSUM + TAR_CHECKSUM_SIZE) ? ' ' : header[b];
    while (i < TAR_CHECKSUM + TAR_CHECKSUM_SIZE && header[i] == ' ')
        i++;
    if (i == TAR_CHECKSUM + TAR_CHECKSUM_SIZE || header[i] < '0' || header[i] > '7')
        return false;
    while (i < TAR_CHECKSUM + TAR_CHECKSUM_SIZE && header[i] >= '0' && header[i] <= '7')
        stored = stored * 8 + (uint64_t)(header[i++] - '0');
    return stored == sum;
}

static int check_tar_header(const imgstore_store__detect_ctx *ctx, const uint8_t *header,
                            size_t len, const char *what)
{
    if (len < TAR_BLOCK)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated %s: the first header needs %d bytes, "
                                                "the file has %zu",
                                                what, TAR_BLOCK, len);
    if (!tar_checksum_ok(header))
        return imgstore_store__detect_malformed(ctx,
                                                "bad %s: the first header's checksum does "
                                                "not match",
                                                what);
    return 0;
}

/*
 * Inflate the start of a gzip stream into out[0..GZIP_PEEK). *len_out is how many bytes came
 * out, fewer when the stream ends first. Corrupt deflate data is malformed; running out of input
 * (a cut-off file) is left for the caller to judge by what came out.
 */
static int gzip_peek(const imgstore_store__detect_ctx *ctx, uint8_t *out, size_t *len_out)
{
    z_stream zs;
    uint8_t *window = NULL;
    uint64_t offset = 0;
    int zerr = Z_OK, err = 0;

    *len_out = 0;
    memset(&zs, 0, sizeof(zs));
    /* 16 + MAX_WBITS: expect a gzip header and trailer around the deflate data. */
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return imgstore_error_set(IMGSTORE_ERROR, "%s: zlib: cannot start inflating",
                                  ctx->file_name);
    if (!(window = malloc(GZIP_INPUT_STEP))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "%s: out of memory", ctx->file_name);
        goto done;
    }
    zs.next_out = out;
    zs.avail_out = GZIP_PEEK;
    while (zs.avail_out > 0 && zerr != Z_STREAM_END && offset < ctx->size &&
           offset < GZIP_INPUT_MAX) {
        size_t step =
            ctx->size - offset < GZIP_INPUT_STEP ? (size_t)(ctx->size - offset) : GZIP_INPUT_STEP;

        if ((err = imgstore_store__detect_read(ctx, window, step, offset)) < 0)
            goto done;
        offset += step;
        zs.next_in = window;
        zs.avail_in = (uInt)step;
        while (zs.avail_out > 0 && zs.avail_in > 0) {
            zerr = inflate(&zs, Z_NO_FLUSH);
            if (zerr == Z_STREAM_END)
                break;
            if (zerr == Z_BUF_ERROR)
                break;
            if (zerr == Z_MEM_ERROR) {
                err = imgstore_error_set(IMGSTORE_ERROR, "%s: zlib: out of memory", ctx->file_name);
                goto done;
            }
            if (zerr != Z_OK) {
                err = imgstore_store__detect_malformed(ctx, "bad gzip: %s",
                                                       zs.msg ? zs.msg : "corrupt data");
                goto done;
            }
        }
    }
    *len_out = GZIP_PEEK - zs.avail_out;
done:
    inflateEnd(&zs);
    free(window);
    return err;
}

static int detect_gzip(imgstore_store__detect_ctx *ctx)
{
    uint8_t peek[GZIP_PEEK];
    size_t len = 0;
    int err;

    if ((err = gzip_peek(ctx, peek, &len)) < 0)
        return err;
    if (is_cpio(peek, len)) {
        set_result(ctx->info, "initrd", "cpio", "gzip");
    } else if (is_tar(peek, len)) {
        if ((err = check_tar_header(ctx, peek, len, "gzip'd tar")) < 0)
            return err;
        set_result(ctx->info, "archive", "tar", "gzip");
    } else {
        set_result(ctx->info, "unknown", "gzip", "gzip");
    }
    return 0;
}

int imgstore_store__detect_archive(imgstore_store__detect_ctx *ctx)
{
    const uint8_t *h = ctx->head;
    size_t len = ctx->head_len;
    int err;

    /* gzip: ID1 ID2, CM 8 (deflate), no reserved flag bits; the bare magic is too common. */
    if (len >= 10 && h[0] == 0x1F && h[1] == 0x8B && h[2] == 8 && (h[3] & 0xE0) == 0) {
        ctx->matched = true;
        return detect_gzip(ctx);
    }
    if (is_cpio(h, len)) {
        ctx->matched = true;
        set_result(ctx->info, "initrd", "cpio", "none");
        return 0;
    }
    for (size_t i = 0; i < sizeof(compressed_streams) / sizeof(compressed_streams[0]); i++) {
        const stream_magic *s = &compressed_streams[i];

        if (imgstore_store__detect_head_has(ctx, 0, s->magic, s->len)) {
            ctx->matched = true;
            set_result(ctx->info, "initrd", "cpio", s->compression);
            return 0;
        }
    }
    if (is_bzip2(h, len)) {
        ctx->matched = true;
        set_result(ctx->info, "initrd", "cpio", "bzip2");
        return 0;
    }
    if (is_tar(h, len)) {
        ctx->matched = true;
        if ((err = check_tar_header(ctx, h, len, "tar")) < 0)
            return err;
        set_result(ctx->info, "archive", "tar", "none");
    }
    return 0;
}
