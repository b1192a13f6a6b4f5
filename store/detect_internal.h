/*
 * Shared by the format detectors (detect*.c) and nothing else: the detection context, bounded
 * reads through the caller's read_at callback, the "malformed" error helper and byte loaders
 * that never do unaligned or out-of-range accesses.
 */
#ifndef IMGSTORE_STORE_DETECT_INTERNAL_H
#define IMGSTORE_STORE_DETECT_INTERNAL_H

#include "store/store_internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The first bytes of every file are read once and kept: every magic number imgstore knows lives
 * in them (the ISO 9660 primary volume descriptor ends at byte 34816), and most detectors then
 * need nothing else. Everything beyond is read in small windows.
 */
#define IMGSTORE_DETECT_HEAD_MAX (64u * 1024)

typedef struct {
    imgstore_file_info *info; /* what the detectors fill */
    const char *file_name;    /* for messages */
    uint64_t size;
    imgstore_store__read_at_fn read_at;
    void *payload;
    uint8_t *head;   /* the first head_len bytes of the file */
    size_t head_len; /* min(size, IMGSTORE_DETECT_HEAD_MAX) */
    bool matched;    /* set by the detector that recognised the bytes */
} imgstore_store__detect_ctx;

/*
 * Each detector looks at ctx->head first and returns 0 with ctx->matched false when the bytes are
 * not its format, leaving ctx->info alone. When they are, it fills ctx->info, sets ctx->matched
 * and returns 0, or returns IMGSTORE_EINVALID (malformed) or IMGSTORE_ERROR (read failure).
 */
int imgstore_store__detect_elf(imgstore_store__detect_ctx *ctx);
int imgstore_store__detect_bzimage(imgstore_store__detect_ctx *ctx);
int imgstore_store__detect_pe(imgstore_store__detect_ctx *ctx);
int imgstore_store__detect_virtual_disk(imgstore_store__detect_ctx *ctx);
int imgstore_store__detect_iso9660(imgstore_store__detect_ctx *ctx);
int imgstore_store__detect_partitioned(imgstore_store__detect_ctx *ctx);
int imgstore_store__detect_archive(imgstore_store__detect_ctx *ctx);

/**
 * Read exactly `len` bytes at `offset`, from the head when it holds them. The caller has checked
 * the range with imgstore_store__detect_in_file(); a short read therefore means the file shrank
 * under us. Returns 0 or IMGSTORE_ERROR (or the callback's code).
 */
int imgstore_store__detect_read(const imgstore_store__detect_ctx *ctx, void *buf, size_t len,
                                uint64_t offset);

/** True when [offset, offset + len) lies inside the file, without overflowing. */
bool imgstore_store__detect_in_file(const imgstore_store__detect_ctx *ctx, uint64_t offset,
                                    uint64_t len);

/** Record "<file name>: <message>" and return IMGSTORE_EINVALID. */
int imgstore_store__detect_malformed(const imgstore_store__detect_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Copy a NUL-terminated string into a fixed field, truncating to fit. */
void imgstore_store__detect_set(char *field, size_t field_size, const char *value);

/** True when the head holds `len` bytes equal to `magic` at `offset`. */
bool imgstore_store__detect_head_has(const imgstore_store__detect_ctx *ctx, size_t offset,
                                     const void *magic, size_t len);

/** The MBR and GPT probes, shared by the ISO 9660 (hybrid) and raw disk detectors. */
bool imgstore_store__detect_mbr_valid(const imgstore_store__detect_ctx *ctx, bool *esp_out,
                                      bool *protective_out);
int imgstore_store__detect_gpt_has_esp(const imgstore_store__detect_ctx *ctx, bool *out);

/* Byte loaders: formats fix their byte order, and memcpy-free byte arithmetic keeps UBSan quiet
 * on unaligned fields. */
static inline uint16_t imgstore_store__le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t imgstore_store__le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t imgstore_store__le64(const uint8_t *p)
{
    return (uint64_t)imgstore_store__le32(p) | ((uint64_t)imgstore_store__le32(p + 4) << 32);
}

static inline uint16_t imgstore_store__be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t imgstore_store__be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline uint64_t imgstore_store__be64(const uint8_t *p)
{
    return ((uint64_t)imgstore_store__be32(p) << 32) | (uint64_t)imgstore_store__be32(p + 4);
}

#endif
