/*
 * Format detection: decides what a pushed file is (unikernel, kernel, initrd, disk, EFI
 * application, archive, command line, xl config) from its bytes and, for text, its name. This
 * file owns the entry point, the order in which formats are tried, the bounded reads every
 * detector goes through and the text formats; the binary formats live in detect_elf.c,
 * detect_boot.c, detect_disk.c and detect_archive.c. Detection never reads a whole file: it keeps
 * the first 64 KiB and reads a few small windows beyond, so memory stays bounded whatever the
 * image size. It does not decide what to do with a malformed file; it reports it.
 */
#include "store/detect_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text detection looks at this much; a longer file can still be text, but not a cmdline. */
#define TEXT_PROBE_MAX 4096u

typedef int (*detector_fn)(imgstore_store__detect_ctx *ctx);

/*
 * Order matters. An EFI-stub Linux kernel is both a PE image and a bzImage and is a kernel, so
 * bzImage goes before PE. A fixed VHD ends in a footer but starts with whatever disk it holds,
 * and a hybrid ISO starts with an MBR, so both go before the plain MBR/GPT check.
 */
static const detector_fn detectors[] = {
    imgstore_store__detect_elf,          /* Solo5 unikernels, Xen kernels, any ELF */
    imgstore_store__detect_bzimage,      /* x86 Linux boot protocol */
    imgstore_store__detect_pe,           /* EFI applications, other PE */
    imgstore_store__detect_virtual_disk, /* qcow2, VHD, VHDX, VMDK */
    imgstore_store__detect_iso9660,      /* plain and hybrid */
    imgstore_store__detect_partitioned,  /* raw GPT and MBR disks */
    imgstore_store__detect_archive,      /* cpio, tar, compressed streams */
};

bool imgstore_store__detect_in_file(const imgstore_store__detect_ctx *ctx, uint64_t offset,
                                    uint64_t len)
{
    return offset <= ctx->size && len <= ctx->size - offset;
}

bool imgstore_store__detect_head_has(const imgstore_store__detect_ctx *ctx, size_t offset,
                                     const void *magic, size_t len)
{
    return offset <= ctx->head_len && len <= ctx->head_len - offset &&
           memcmp(ctx->head + offset, magic, len) == 0;
}

int imgstore_store__detect_read(const imgstore_store__detect_ctx *ctx, void *buf, size_t len,
                                uint64_t offset)
{
    uint8_t *dst = buf;
    size_t done = 0;

    if (!imgstore_store__detect_in_file(ctx, offset, len))
        return imgstore_error_set(IMGSTORE_ERROR,
                                  "%s: detection read %zu bytes at byte %" PRIu64
                                  " beyond the file's %" PRIu64 " bytes",
                                  ctx->file_name, len, offset, ctx->size);
    if (offset < ctx->head_len && len <= ctx->head_len - offset) {
        memcpy(dst, ctx->head + offset, len);
        return 0;
    }
    while (done < len) {
        size_t got = 0;
        int err = ctx->read_at(&got, dst + done, len - done, offset + done, ctx->payload);

        if (err < 0)
            return err;
        /* read_at is short only at the end of the file, and we stay inside its size. */
        if (got == 0 || got > len - done)
            return imgstore_error_set(IMGSTORE_ERROR,
                                      "%s: short read at byte %" PRIu64
                                      ": the file is shorter than its %" PRIu64 " bytes",
                                      ctx->file_name, offset + done, ctx->size);
        done += got;
    }
    return 0;
}

int imgstore_store__detect_malformed(const imgstore_store__detect_ctx *ctx, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return imgstore_error_set(IMGSTORE_EINVALID, "%s: %s", ctx->file_name, msg);
}

void imgstore_store__detect_set(char *field, size_t field_size, const char *value)
{
    snprintf(field, field_size, "%s", value);
}

/* ---- text ----------------------------------------------------------------------------- */

/*
 * Length of the valid UTF-8 sequence at buf[0..len), 0 if invalid. A sequence cut by the end of
 * the probe window counts as valid when `window_cut` says the file goes on.
 */
static size_t utf8_sequence_len(const uint8_t *buf, size_t len, bool window_cut)
{
    size_t need;

    if (buf[0] >= 0xC2 && buf[0] <= 0xDF)
        need = 2;
    else if (buf[0] >= 0xE0 && buf[0] <= 0xEF)
        need = 3;
    else if (buf[0] >= 0xF0 && buf[0] <= 0xF4)
        need = 4;
    else
        return 0;
    for (size_t i = 1; i < need; i++) {
        if (i == len)
            return window_cut ? len : 0;
        if ((buf[i] & 0xC0) != 0x80)
            return 0;
    }
    return need;
}

static bool is_text(const uint8_t *buf, size_t len, bool window_cut)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = buf[i];
        size_t seq;

        if ((c >= 0x20 && c < 0x7F) || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
            i++;
            continue;
        }
        if ((seq = utf8_sequence_len(buf + i, len - i, window_cut)) == 0)
            return false;
        i += seq;
    }
    return true;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash ? slash + 1 : path;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t s_len = strlen(s);
    size_t suffix_len = strlen(suffix);

    return s_len >= suffix_len && strcmp(s + s_len - suffix_len, suffix) == 0;
}

/* An xl(1) domain config names its kernel: a line `kernel = "..."` (or with single quotes). */
static bool has_xl_kernel_line(const char *text)
{
    const char *line = text;

    while (line && *line) {
        const char *p = line;

        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "kernel", 6) == 0) {
            p += 6;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p == '=') {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                if (*p == '"' || *p == '\'')
                    return true;
            }
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return false;
}

/* Cut `text` to fit the info field without splitting a UTF-8 sequence. */
static void set_text(imgstore_file_info *info, const uint8_t *buf, size_t len)
{
    if (len > sizeof(info->text) - 1) {
        len = sizeof(info->text) - 1;
        while (len > 0 && (buf[len] & 0xC0) == 0x80)
            len--;
    }
    if (len > 0)
        memcpy(info->text, buf, len);
    info->text[len] = '\0';
}

static int detect_text(imgstore_store__detect_ctx *ctx)
{
    imgstore_file_info *info = ctx->info;
    const char *name = base_name(ctx->file_name);
    size_t probe_len = ctx->head_len < TEXT_PROBE_MAX ? ctx->head_len : TEXT_PROBE_MAX;
    size_t len = probe_len;

    if (!is_text(ctx->head, probe_len, ctx->size > probe_len))
        return 0;
    ctx->matched = true;
    imgstore_store__detect_set(info->format, sizeof(info->format), "text");
    imgstore_store__detect_set(info->kind, sizeof(info->kind), "unknown");
    if (ctx->size > IMGSTORE_TEXT_MAX)
        return 0;
    if (strstr(name, "cmdline")) {
        /* The newline an editor adds is not part of the kernel command line. */
        while (len > 0 && (ctx->head[len - 1] == '\n' || ctx->head[len - 1] == '\r'))
            len--;
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "cmdline");
        set_text(info, ctx->head, len);
        return 0;
    }
    set_text(info, ctx->head, len);
    if (ends_with(name, ".xl") || has_xl_kernel_line(info->text)) {
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "config");
        imgstore_store__detect_set(info->format, sizeof(info->format), "xl");
        return 0;
    }
    /* Only cmdline and config files carry their text into the manifest. */
    info->text[0] = '\0';
    return 0;
}

/* ---- entry point ---------------------------------------------------------------------- */

static int read_head(imgstore_store__detect_ctx *ctx)
{
    int err;
    size_t want =
        ctx->size < IMGSTORE_DETECT_HEAD_MAX ? (size_t)ctx->size : IMGSTORE_DETECT_HEAD_MAX;

    if (want == 0)
        return 0;
    if (!(ctx->head = malloc(want)))
        return imgstore_error_set(IMGSTORE_ERROR, "%s: out of memory for detection",
                                  ctx->file_name);
    /* head_len stays 0 until the head is read, so this read goes to the callback. */
    if ((err = imgstore_store__detect_read(ctx, ctx->head, want, 0)) < 0)
        return err;
    ctx->head_len = want;
    return 0;
}

int imgstore_store__detect(imgstore_file_info *out, const char *file_name, uint64_t size,
                           imgstore_store__read_at_fn read_at, void *payload)
{
    imgstore_store__detect_ctx ctx = {0};
    imgstore_file_info *info = NULL;
    int err = 0;

    if (!out || !read_at)
        return imgstore_error_set(IMGSTORE_EINVALID, "detect: no output or no reader given");
    memset(out, 0, sizeof(*out));
    if (!(info = calloc(1, sizeof(*info)))) {
        err = imgstore_error_set(IMGSTORE_ERROR, "detect: out of memory");
        goto done;
    }
    ctx.info = info;
    ctx.file_name = file_name ? file_name : "(unnamed)";
    ctx.size = size;
    ctx.read_at = read_at;
    ctx.payload = payload;
    if ((err = read_head(&ctx)) < 0)
        goto done;
    for (size_t i = 0; i < sizeof(detectors) / sizeof(detectors[0]) && !ctx.matched; i++) {
        if ((err = detectors[i](&ctx)) < 0)
            goto done;
    }
    if (!ctx.matched && (err = detect_text(&ctx)) < 0)
        goto done;
    if (!ctx.matched) {
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "unknown");
        imgstore_store__detect_set(info->format, sizeof(info->format), "unknown");
    }
    memcpy(out, info, sizeof(*out));
done:
    free(ctx.head);
    free(info);
    return err;
}
