/*
 * The "kind", "format" and "details" of one manifest file: what format detection learned,
 * written as an object that holds only what is known (no empty strings, zeros or false) and
 * read back with the same rules, so that a detail has exactly one spelling. The list of
 * detail fields lives in one table below; manifest.schema.json mirrors it. Chunks, sizes and
 * paths belong to manifest.c.
 */
#include "schema/schema_internal.h"

#include <stddef.h>
#include <string.h>

/* Bytes a device name may hold: Solo5's MFT_NAME_SIZE less the NUL. */
#define DEVICE_NAME_MAX (sizeof(((imgstore_device *)0)->name) - 1)

typedef enum {
    TEXT_ANY,   /* free UTF-8 text: kernel banners, volume labels, command lines */
    TEXT_TOKEN, /* a-z 0-9 . _ + -: identifiers a program compares */
    TEXT_ENUM,  /* one of a closed list */
} text_rule;

typedef struct {
    const char *key;
    size_t offset; /* of a char array in imgstore_file_info */
    size_t cap;
    text_rule rule;
    const char *const *allowed; /* TEXT_ENUM only */
} text_field;

static const char *const kinds[] = {"unikernel", "kernel", "initrd",  "disk",    "efi",
                                    "archive",   "config", "cmdline", "unknown", NULL};
static const char *const xen_modes[] = {"pv", "pvh", "pv+pvh", NULL};
static const char *const partition_tables[] = {"mbr", "gpt", NULL};
static const char *const compressions[] = {"none", "gzip", "xz", "zstd", "lz4", "bzip2", NULL};

#define INFO_TEXT(field, rule, allowed)                                                            \
    {                                                                                              \
#field, offsetof(imgstore_file_info, field), sizeof(((imgstore_file_info *)0)->field),     \
            rule, allowed                                                                          \
    }

/* "kind" and "format" sit beside "details" in the file object; the rest inside it. */
static const text_field file_texts[] = {
    INFO_TEXT(kind, TEXT_ENUM, kinds),
    INFO_TEXT(format, TEXT_TOKEN, NULL),
};

static const text_field detail_texts[] = {
    INFO_TEXT(arch, TEXT_TOKEN, NULL),
    INFO_TEXT(solo5_target, TEXT_TOKEN, NULL),
    INFO_TEXT(xen_mode, TEXT_ENUM, xen_modes),
    INFO_TEXT(kernel_version, TEXT_ANY, NULL),
    INFO_TEXT(boot_protocol, TEXT_TOKEN, NULL),
    INFO_TEXT(volume_id, TEXT_ANY, NULL),
    INFO_TEXT(partition_table, TEXT_ENUM, partition_tables),
    INFO_TEXT(compression, TEXT_ENUM, compressions),
    INFO_TEXT(text, TEXT_ANY, NULL),
};

static const char *const detail_keys[] = {
    "arch",
    "solo5_target",
    "solo5_abi_version",
    "devices",
    "xen_mode",
    "kernel_version",
    "boot_protocol",
    "volume_id",
    "hybrid",
    "efi",
    "partition_table",
    "virtual_size",
    "compression",
    "text",
    NULL,
};

static const char *const device_keys[] = {"name", "type", NULL};

#define COUNT(array) (sizeof(array) / sizeof((array)[0]))

static int check_token(const char *value, const imgstore_schema__at *at, const char *key)
{
    char shown[IMGSTORE_SCHEMA__QUOTE_CAP];

    if (strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789._+-") == strlen(value))
        return 0;
    imgstore_schema__quote(shown, sizeof(shown), value, strlen(value));
    return imgstore_schema__fail(at, key, "'%s': only a-z 0-9 . _ + - are allowed", shown);
}

static int read_text(imgstore_file_info *info, const text_field *field, const json_t *obj,
                     const imgstore_schema__at *at, bool required)
{
    char *buf = (char *)info + field->offset;
    int err;

    if ((err = imgstore_schema__text_buf(buf, field->cap, obj, at, field->key, required)) < 0 ||
        !buf[0])
        return err;
    if (field->rule == TEXT_TOKEN)
        return check_token(buf, at, field->key);
    if (field->rule == TEXT_ENUM)
        return imgstore_schema__one_of(buf, at, field->key, field->allowed);
    return 0;
}

static int write_text(json_t *obj, const imgstore_file_info *info, const text_field *field,
                      const imgstore_schema__at *at)
{
    const char *buf = (const char *)info + field->offset;

    /* The struct is caller memory: never read past a field that lost its NUL. */
    if (!memchr(buf, '\0', field->cap))
        return imgstore_schema__fail(at, field->key, "not NUL-terminated");
    return imgstore_schema__set_string(obj, at, field->key, buf[0] ? buf : NULL);
}

static int read_device(imgstore_device *device, const json_t *obj, const imgstore_schema__at *at)
{
    int err;

    if ((err = imgstore_schema__keys(obj, at, device_keys)) < 0 ||
        (err = imgstore_schema__text_buf(device->name, sizeof(device->name), obj, at, "name",
                                         true)) < 0 ||
        (err = imgstore_schema__text_buf(device->type, sizeof(device->type), obj, at, "type",
                                         true)) < 0 ||
        (err = check_token(device->type, at, "type")) < 0)
        return err;
    /* Solo5 allows printable ASCII without spaces; anything else is not from a real image. */
    for (const char *c = device->name; *c; c++) {
        if (*c < 0x21 || *c > 0x7e)
            return imgstore_schema__fail(at, "name", "only printable ASCII without spaces");
    }
    return 0;
}

static int read_devices(imgstore_file_info *info, const json_t *details,
                        const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    json_t *devices;
    json_t *device;
    size_t i;
    int err;

    if ((err = imgstore_schema__field(&devices, details, at, "devices", JSON_ARRAY, false)) < 0 ||
        !devices)
        return err;
    if (json_array_size(devices) == 0 || json_array_size(devices) > IMGSTORE_MAX_DEVICES)
        return imgstore_schema__fail(at, "devices", "must hold 1 to %d devices (omit it if none)",
                                     IMGSTORE_MAX_DEVICES);
    json_array_foreach(devices, i, device)
    {
        imgstore_schema__at_index(&item, at, "devices", i);
        if (!json_is_object(device))
            return imgstore_schema__fail(&item, NULL, "expected an object");
        if ((err = read_device(&info->devices[i], device, &item)) < 0)
            return err;
    }
    info->device_count = (uint32_t)json_array_size(devices);
    return 0;
}

static int read_flag(bool *out, const json_t *details, const imgstore_schema__at *at,
                     const char *key)
{
    json_t *value;
    int err;

    if ((err = imgstore_schema__bool(out, details, at, key, false)) < 0)
        return err;
    value = json_object_get(details, key);
    if (value && !*out)
        return imgstore_schema__fail(at, key, "must be omitted when false");
    return 0;
}

int imgstore_schema__file_info_read(imgstore_file_info *info, const json_t *file,
                                    const imgstore_schema__at *at)
{
    imgstore_schema__at where;
    uint64_t abi = 0;
    json_t *details;
    int err;

    memset(info, 0, sizeof(*info));
    for (size_t i = 0; i < COUNT(file_texts); i++) {
        if ((err = read_text(info, &file_texts[i], file, at, true)) < 0)
            return err;
    }
    if ((err = imgstore_schema__field(&details, file, at, "details", JSON_OBJECT, true)) < 0)
        return err;
    imgstore_schema__at_key(&where, at, "details");
    if ((err = imgstore_schema__keys(details, &where, detail_keys)) < 0)
        return err;
    for (size_t i = 0; i < COUNT(detail_texts); i++) {
        if ((err = read_text(info, &detail_texts[i], details, &where, false)) < 0)
            return err;
    }
    if ((err = imgstore_schema__uint(&abi, details, &where, "solo5_abi_version", 1, UINT32_MAX,
                                     false)) < 0 ||
        (err = imgstore_schema__uint(&info->virtual_size, details, &where, "virtual_size", 1,
                                     IMGSTORE_SCHEMA__INT_MAX, false)) < 0 ||
        (err = read_flag(&info->hybrid, details, &where, "hybrid")) < 0 ||
        (err = read_flag(&info->efi, details, &where, "efi")) < 0 ||
        (err = read_devices(info, details, &where)) < 0)
        return err;
    info->solo5_abi_version = (uint32_t)abi;
    return 0;
}

static int write_devices(json_t *details, const imgstore_file_info *info,
                         const imgstore_schema__at *at)
{
    imgstore_schema__at item;
    json_t *devices = NULL;
    json_t *device;
    int err;

    if (info->device_count > IMGSTORE_MAX_DEVICES)
        return imgstore_schema__fail(at, "devices", "more than %d devices", IMGSTORE_MAX_DEVICES);
    if (info->device_count == 0)
        return 0;
    if (!(devices = json_array()))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    for (uint32_t i = 0; i < info->device_count; i++) {
        const imgstore_device *d = &info->devices[i];

        imgstore_schema__at_index(&item, at, "devices", i);
        if (!memchr(d->name, '\0', sizeof(d->name)) || !memchr(d->type, '\0', sizeof(d->type))) {
            err = imgstore_schema__fail(&item, NULL, "not NUL-terminated");
            goto done;
        }
        if (!(device = json_object())) {
            err = imgstore_error_set(IMGSTORE_ERROR, "out of memory");
            goto done;
        }
        if ((err = imgstore_schema__append_new(devices, device)) < 0 ||
            (err = imgstore_schema__set_string(device, &item, "name", d->name)) < 0 ||
            (err = imgstore_schema__set_string(device, &item, "type", d->type)) < 0)
            goto done;
    }
    err = imgstore_schema__set_new(details, "devices", devices);
    devices = NULL;
done:
    json_decref(devices);
    return err;
}

int imgstore_schema__file_info_write(json_t *file, const imgstore_file_info *info,
                                     const imgstore_schema__at *at)
{
    imgstore_schema__at where;
    json_t *details = NULL;
    int err;

    for (size_t i = 0; i < COUNT(file_texts); i++) {
        if ((err = write_text(file, info, &file_texts[i], at)) < 0)
            return err;
    }
    if (!(details = json_object()))
        return imgstore_error_set(IMGSTORE_ERROR, "out of memory");
    imgstore_schema__at_key(&where, at, "details");
    for (size_t i = 0; i < COUNT(detail_texts); i++) {
        if ((err = write_text(details, info, &detail_texts[i], &where)) < 0)
            goto done;
    }
    if ((info->solo5_abi_version &&
         (err = imgstore_schema__set_uint(details, &where, "solo5_abi_version",
                                          info->solo5_abi_version)) < 0) ||
        (info->virtual_size && (err = imgstore_schema__set_uint(details, &where, "virtual_size",
                                                                info->virtual_size)) < 0) ||
        (info->hybrid && (err = imgstore_schema__set_bool(details, "hybrid", true)) < 0) ||
        (info->efi && (err = imgstore_schema__set_bool(details, "efi", true)) < 0) ||
        (err = write_devices(details, info, &where)) < 0)
        goto done;
    err = imgstore_schema__set_new(file, "details", details);
    details = NULL;
done:
    json_decref(details);
    return err;
}

int imgstore_schema_check_kind(const char *kind)
{
    imgstore_schema__at at;

    imgstore_schema__at_root(&at, "file");
    return imgstore_schema__one_of(kind ? kind : "", &at, "kind", kinds);
}
