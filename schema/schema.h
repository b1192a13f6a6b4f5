/*
 * The JSON that imgstore stores and serves: image manifests and channel states in their
 * canonical byte form (sorted keys, no insignificant whitespace, UTF-8, integers only; the
 * bytes signed are the bytes stored), the validation rules for names, and the JSON views the
 * CLI's --json and the HTTP API share. Knows nothing of git, HTTP or argv.
 */
#ifndef IMGSTORE_SCHEMA_H
#define IMGSTORE_SCHEMA_H

#include "common/common.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define IMGSTORE_MANIFEST_SCHEMA "imgstore.manifest/1"
#define IMGSTORE_CHANNEL_SCHEMA  "imgstore.channel/1"

/* Hard caps on what a manifest may hold; exceeding one is IMGSTORE_EINVALID. */
#define IMGSTORE_MANIFEST_MAX_BYTES (32u * 1024 * 1024)
#define IMGSTORE_MAX_FILES          64
#define IMGSTORE_MAX_LABELS         64
#define IMGSTORE_MAX_DEVICES        64
#define IMGSTORE_NAME_MAX           128  /* image, version, channel, file name, label key */
#define IMGSTORE_TEXT_MAX           4096 /* label value, reason, cmdline text, source: < this */

/* ---- names ---------------------------------------------------------------------------- */

typedef enum {
    IMGSTORE_NAME_IMAGE,   /* "app", "linuxkit-sshd" */
    IMGSTORE_NAME_VERSION, /* "1.4.0", "2026.11.25+g1a2b3c" */
    IMGSTORE_NAME_CHANNEL, /* "prod", "staging" */
    IMGSTORE_NAME_FILE,    /* "app.xen", "initrd.img" */
    IMGSTORE_NAME_LABEL,   /* label key: "ci.job" */
    IMGSTORE_NAME_HOST,    /* a host in agent reports: "web-3.fra1" */
} imgstore_name_kind;

/**
 * Check a name against the documented rule for its kind (docs/format.md, "Names"):
 * 1..128 bytes; image and channel names [a-z0-9._-], versions, file names and label keys
 * [A-Za-z0-9._+-]; never starting with '.', '-' or '+'. So never "." or "..", and no '/',
 * NUL, space or control characters.
 * Returns 0 or IMGSTORE_EINVALID with a message naming the kind, the value and the rule.
 */
int imgstore_schema_check_name(imgstore_name_kind kind, const char *value);

/**
 * Check a free text that is stored and shown as one line (a label value, the source, a
 * reason, an actor): UTF-8 of at most IMGSTORE_TEXT_MAX - 1 bytes without control
 * characters (U+0000-U+001F, U+007F-U+009F), line or paragraph separators (U+2028, U+2029)
 * or bidirectional controls (U+202A-U+202E, U+2066-U+2069), which could clear or rewrite a
 * terminal, or forge a second line in `history` and `git log` (issue #10). `field` names the
 * text in the message ("reason", "label ci.job"). Returns 0 or IMGSTORE_EINVALID.
 */
int imgstore_schema_check_text(const char *field, const char *value);

/**
 * `text` made safe to show on a terminal: each character imgstore_schema_check_text refuses
 * is written as `\xHH` (below U+0100) or `\uHHHH`, each byte that is not UTF-8 as `\xHH`;
 * all else is copied. For values read back from old stores or from a server, which were
 * never checked here. A new string (free()), or NULL when memory runs out.
 */
char *imgstore_schema_text_escape(const char *text);

/**
 * Check a file kind ("unikernel", "kernel", "initrd", "disk", "efi", "archive", "config",
 * "cmdline", "unknown"). Returns 0 or IMGSTORE_EINVALID listing the kinds.
 */
int imgstore_schema_check_kind(const char *kind);

/* ---- what a file is ------------------------------------------------------------------- */

typedef struct {
    char name[68]; /* Solo5 MFT_NAME_SIZE */
    char type[16]; /* "net-basic", "block-basic" */
} imgstore_device;

/*
 * What format detection learned about one file. Empty strings and zero mean "not known /
 * not applicable"; only known fields are encoded into the manifest's "details" object.
 */
typedef struct {
    char kind[24];   /* unikernel, kernel, initrd, disk, efi, archive, config, cmdline, unknown */
    char format[24]; /* see docs/format.md "File kinds and formats" */
    char arch[16];   /* x86_64, aarch64, ... (ELF, PE) */
    /* Solo5 unikernels */
    char solo5_target[16]; /* hvt, spt, virtio, muen, xen */
    uint32_t solo5_abi_version;
    uint32_t device_count;
    imgstore_device devices[IMGSTORE_MAX_DEVICES];
    /* Xen kernels: "pv", "pvh" or "pv+pvh" */
    char xen_mode[8];
    /* Linux boot protocol images */
    char kernel_version[128];
    char boot_protocol[8]; /* "2.15" */
    /* ISO 9660 */
    char volume_id[33];
    bool hybrid; /* ISO that is also a bootable disk (MBR/GPT) */
    bool efi;    /* ISO with an EFI El Torito entry / disk with an EFI system partition */
    /* disks */
    char partition_table[8]; /* "mbr", "gpt" */
    uint64_t virtual_size;   /* qcow2, VHD, VHDX, VMDK: guest-visible disk size */
    /* initrd and tarballs: "none", "gzip", "xz", "zstd", "lz4", "bzip2" */
    char compression[8];
    /* kind "cmdline" (the kernel command line text) and "config" (first bytes of an .xl) */
    char text[IMGSTORE_TEXT_MAX];
} imgstore_file_info;

/* ---- manifests ------------------------------------------------------------------------ */

typedef struct {
    char sha256[65]; /* lower-case hex */
    uint64_t size;
} imgstore_chunk_ref;

typedef struct {
    char *path; /* a file name, see IMGSTORE_NAME_FILE */
    uint64_t size;
    char sha256[65];
    imgstore_file_info info;
    size_t chunk_count;
    imgstore_chunk_ref *chunks; /* in file order */
} imgstore_manifest_file;

typedef struct {
    char *key;
    char *value;
} imgstore_label;

/* A kernel + initrd (+ cmdline) boot set found among the files (LinuxKit style). */
typedef struct {
    char *kernel;  /* file path, NULL if none */
    char *initrd;  /* file path, NULL if none */
    char *cmdline; /* file path, NULL if none */
    bool complete; /* all three present */
} imgstore_boot_set;

typedef struct {
    char *name;
    char *version;
    char *created; /* RFC 3339 UTC */
    size_t file_count;
    imgstore_manifest_file *files; /* sorted by path */
    /* provenance */
    char *source_repository; /* NULL if not given */
    char *source_commit;     /* NULL if not given */
    char *builder;           /* who/what built and pushed it */
    size_t label_count;
    imgstore_label *labels; /* sorted by key */
    imgstore_boot_set boot; /* only encoded when boot.kernel is set */
} imgstore_manifest;

/*
 * Free texts (builder, source, label values, actor, reason, details "text") hold at most
 * IMGSTORE_TEXT_MAX - 1 bytes of UTF-8, so that any of them fits the fixed text buffers. A
 * writer that truncates text must cut at a UTF-8 character boundary.
 */

/** Free a manifest and everything it owns. NULL-safe. */
void imgstore_manifest_free(imgstore_manifest *manifest);

/**
 * Canonical bytes of a manifest (the stored and signed form, without a trailing newline).
 * *out is NUL-terminated and freed with free(); *len_out excludes the NUL.
 * Encode refuses whatever parse would refuse, so its output always parses: in particular
 * `files` must already be sorted by path with no duplicates (encode does not sort), label
 * keys must be unique (their order does not matter), strings must be UTF-8 and the fixed
 * arrays NUL-terminated. Details that are empty, zero or false are left out; `boot` is
 * written only when boot.kernel is set (a lone initrd or cmdline is then dropped).
 * Returns 0, IMGSTORE_EINVALID (a field breaks a rule; the message names its JSON path, as
 * in "manifest: files[1].path: duplicate path") or IMGSTORE_ERROR (out of memory).
 */
int imgstore_schema_manifest_encode(char **out, size_t *len_out, const imgstore_manifest *manifest);

/**
 * Parse and validate manifest bytes (canonical or not). Every rule of
 * schema/manifest.schema.json is checked, plus: file sizes equal the sum of their chunk sizes,
 * files sorted by path and unique, boot paths name files of the manifest, times that exist.
 * Labels come back sorted by key. *out is freed with imgstore_manifest_free(); NULL on error.
 * Returns 0, IMGSTORE_EINVALID naming the offending field ("manifest:
 * files[2].chunks[7].sha256: expected 64 lower-case hex digits") or IMGSTORE_ERROR (memory).
 */
int imgstore_schema_manifest_parse(imgstore_manifest **out, const char *buf, size_t len);

/** True when `buf` is a valid manifest and exactly the canonical encoding of it. */
bool imgstore_schema_manifest_is_canonical(const char *buf, size_t len);

/**
 * The manifest as a jansson object (the same shape as its canonical bytes), for --json output
 * and the HTTP API. New reference. Does not validate (encode does); NULL with the error
 * message set when a field cannot be represented (not UTF-8, too large) or memory runs out.
 */
json_t *imgstore_schema_manifest_to_json(const imgstore_manifest *manifest);

/* ---- channel states ------------------------------------------------------------------- */

/* Versions a state's rollback stack keeps below the current one; older ones fall off
 * (docs/format.md, "Rollback stack"). */
#define IMGSTORE_CHANNEL_STACK_MAX 32

typedef struct {
    char *name;    /* image name */
    char *channel; /* channel name */
    char *version; /* version the channel points at */
    char manifest_sha256[65];
    uint64_t sequence;      /* strictly increasing per channel, first state is 1 */
    char *time;             /* RFC 3339 UTC */
    char *expires;          /* RFC 3339 UTC, NULL when none */
    char *actor;            /* who moved it */
    char *action;           /* "deploy" or "rollback" */
    char *reason;           /* free text, NULL when none */
    char *previous_version; /* version before this move, NULL for the first state */
    bool has_stack;         /* false for a state written before the stack existed (legacy) */
    size_t stack_count;     /* 0..IMGSTORE_CHANNEL_STACK_MAX */
    char *stack[IMGSTORE_CHANNEL_STACK_MAX]; /* the versions below `version`, nearest first:
                                                where a rollback without a target goes */
} imgstore_channel_state;

/** Free a channel state and everything it owns. NULL-safe. */
void imgstore_channel_state_free(imgstore_channel_state *state);

/**
 * Canonical bytes of a channel state (schema/channel.schema.json). Same contract as
 * imgstore_schema_manifest_encode; NULL expires, reason and previous_version are left out,
 * and so is the stack when has_stack is false (an empty known stack is written as []).
 */
int imgstore_schema_channel_encode(char **out, size_t *len_out,
                                   const imgstore_channel_state *state);

/**
 * Parse and validate channel state bytes (at most 64 KiB). Same contract as
 * imgstore_schema_manifest_parse. Whether `sequence` really increases is the store's check.
 */
int imgstore_schema_channel_parse(imgstore_channel_state **out, const char *buf, size_t len);

/** The channel state as a jansson object. New reference; NULL as for manifest_to_json. */
json_t *imgstore_schema_channel_to_json(const imgstore_channel_state *state);

/* ---- trust policy --------------------------------------------------------------------- */

#define IMGSTORE_POLICY_SCHEMA      "imgstore.policy/1"
#define IMGSTORE_POLICY_KEYS_MAX    32      /* keys per role */
#define IMGSTORE_POLICY_TTL_DEFAULT 2592000 /* channel_ttl_seconds of a new policy: 30 days */

/*
 * Who may sign what (issue #4): root signs new policies, release signs manifests, deploy signs
 * channel states. Every policy names all three.
 */
typedef enum {
    IMGSTORE_ROLE_ROOT,
    IMGSTORE_ROLE_RELEASE,
    IMGSTORE_ROLE_DEPLOY,
    IMGSTORE_ROLE_COUNT
} imgstore_role;

typedef struct {
    size_t key_count;   /* 1..IMGSTORE_POLICY_KEYS_MAX */
    char **keys;        /* OpenSSH public key lines "ssh-ed25519 AAAA... [comment]", in order */
    uint32_t threshold; /* signatures by distinct keys needed: 1..key_count */
} imgstore_policy_role;

/*
 * The trust policy stored at trust/policy.json (schema/policy.schema.json). The keys are
 * checked as text only (schema does not use the sign module): the ssh-ed25519 prefix, a
 * base64 blob of the right length, an optional comment, at most 512 bytes a line, and no two
 * keys of one role with the same base64 part (comments are labels, not identity).
 */
typedef struct {
    uint64_t version; /* 1, then each new policy is the previous + 1 (the store's check) */
    int64_t channel_ttl_seconds; /* how long a signed channel state stays valid: 60..31536000 */
    imgstore_policy_role roles[IMGSTORE_ROLE_COUNT];
} imgstore_policy;

/** Free a policy (from parse, copy or calloc) and every key it owns. NULL-safe. */
void imgstore_policy_free(imgstore_policy *policy);

/**
 * The role's name in policies and on the command line: "root", "release" or "deploy".
 * A static string; NULL for a value outside the enum.
 */
const char *imgstore_schema_role_name(imgstore_role role);

/**
 * Look up a role by its name (exact, lower case). *out is left alone on failure.
 * Returns 0 or IMGSTORE_EINVALID naming the allowed roles.
 */
int imgstore_schema_role_parse(imgstore_role *out, const char *name);

/**
 * Canonical bytes of a policy. Same contract as imgstore_schema_manifest_encode: encode
 * refuses whatever parse would refuse, so its output always parses; keys keep their order.
 * Returns 0, IMGSTORE_EINVALID naming the field ("policy: roles.deploy.threshold: 3 is more
 * than the 2 keys"; also when the bytes would pass 64 KiB) or IMGSTORE_ERROR (memory).
 */
int imgstore_schema_policy_encode(char **out, size_t *len_out, const imgstore_policy *policy);

/**
 * Parse and validate policy bytes (canonical or not, at most 64 KiB): every rule of
 * schema/policy.schema.json plus distinct keys per role and threshold <= number of keys.
 * Whether `version` follows the stored policy is the store's check. *out is freed with
 * imgstore_policy_free(); NULL on error. Returns 0, IMGSTORE_EINVALID naming the field
 * ("policy: roles.root.keys[1]: same key as keys[0]") or IMGSTORE_ERROR (memory).
 */
int imgstore_schema_policy_parse(imgstore_policy **out, const char *buf, size_t len);

/** True when `buf` is a valid policy and exactly the canonical encoding of it. */
bool imgstore_schema_policy_is_canonical(const char *buf, size_t len);

/** The policy as a jansson object. New reference; NULL as for manifest_to_json. */
json_t *imgstore_schema_policy_to_json(const imgstore_policy *policy);

/**
 * Deep copy of `policy`, to edit a new version without touching the one in use. Copies as
 * is, without validating. *out is freed with imgstore_policy_free(); NULL on error.
 * Returns 0, IMGSTORE_EINVALID (NULL policy, or keys missing for a nonzero key_count) or
 * IMGSTORE_ERROR (memory).
 */
int imgstore_schema_policy_copy(imgstore_policy **out, const imgstore_policy *policy);

/*
 * Editing. Each helper changes one role and keeps its rules, so that a policy that was valid
 * stays valid; none changes `version` (the caller sets previous + 1). On failure the policy
 * is unchanged.
 */

/**
 * Append `key_line` (copied) to the keys of `role`. Returns 0, IMGSTORE_EINVALID (not an
 * ssh-ed25519 key line, or the role already holds IMGSTORE_POLICY_KEYS_MAX keys),
 * IMGSTORE_EEXISTS (a key with the same base64 part is in the role, whatever its comment)
 * or IMGSTORE_ERROR (memory).
 */
int imgstore_schema_policy_add_key(imgstore_policy *policy, imgstore_role role,
                                   const char *key_line);

/**
 * Remove the key of `role` whose base64 part is that of `key_line` (comments are ignored).
 * Refuses to leave the role with no key or with fewer keys than its threshold (lower the
 * threshold first). Returns 0, IMGSTORE_EINVALID (bad key line, last key, below threshold)
 * or IMGSTORE_ENOTFOUND (no such key in the role).
 */
int imgstore_schema_policy_remove_key(imgstore_policy *policy, imgstore_role role,
                                      const char *key_line);

/**
 * Set the threshold of `role`. Returns 0 or IMGSTORE_EINVALID (0, or more than the role's
 * keys).
 */
int imgstore_schema_policy_set_threshold(imgstore_policy *policy, imgstore_role role,
                                         uint32_t threshold);

/* ---- OCI image manifests (oci.c, docs/oci.md) ---------------------------------------- */

#define IMGSTORE_OCI_MANIFEST_TYPE      "application/vnd.oci.image.manifest.v1+json"
#define IMGSTORE_OCI_CONFIG_TYPE        "application/vnd.imgstore.config.v1+json"
#define IMGSTORE_OCI_LAYER_PREFIX       "application/vnd.imgstore."
#define IMGSTORE_OCI_TITLE              "org.opencontainers.image.title"
/* Manifests a registry should take: at least 4 MiB (distribution-spec, "Pushing Manifests") */
#define IMGSTORE_OCI_MANIFEST_MAX_BYTES (4u * 1024 * 1024)

/**
 * The config blob of a version's OCI form (docs/oci.md): its exact canonical manifest bytes
 * `canonical` (as stored and signed) as a JSON string and their SHA-256 (hex), sorted keys,
 * compact: a pure function of the bytes. *out NUL-terminated, freed with free(). Returns 0,
 * IMGSTORE_EINVALID, IMGSTORE_ERROR.
 */
int imgstore_schema_oci_config(char **out, size_t *len_out, const char *canonical,
                               size_t canonical_len, const char *canonical_sha256);

/**
 * The OCI image manifest of a version: the config descriptor (`config_sha256`, `config_len`,
 * from imgstore_schema_oci_config), one layer per file (digest = the file's SHA-256, media
 * type application/vnd.imgstore.<kind>[.<format>], the file name in
 * org.opencontainers.image.title, each detected detail as org.imgstore.<detail>) and the
 * provenance as annotations. A pure function of its arguments, so its digest never changes.
 * *out NUL-terminated, freed with free(). Returns 0, IMGSTORE_EINVALID, IMGSTORE_ERROR.
 */
int imgstore_schema_oci_manifest(char **out, size_t *len_out, const imgstore_manifest *manifest,
                                 const char *canonical_sha256, const char *config_sha256,
                                 size_t config_len);

/** A descriptor of a pushed OCI manifest: sha256 only. */
typedef struct {
    char sha256[65];
    uint64_t size;
    char *media_type;
    char *title; /* org.opencontainers.image.title; NULL when absent (config) */
} imgstore_oci_descriptor;

/* What a pushed OCI image manifest says that imgstore keeps. */
typedef struct {
    imgstore_oci_descriptor config;
    size_t layer_count;
    imgstore_oci_descriptor *layers;
    char *created;  /* org.opencontainers.image.created, NULL when absent */
    char *source;   /* org.opencontainers.image.source */
    char *revision; /* org.opencontainers.image.revision */
    size_t label_count;
    imgstore_label *labels; /* from org.imgstore.label.<key> annotations */
} imgstore_oci_manifest;

/**
 * Parse a pushed OCI image manifest: schemaVersion 2, the OCI image manifest media type (or
 * none), sha256 descriptors, at most IMGSTORE_MAX_FILES layers. Names are not checked here
 * (the store does, as for any push). *out freed with imgstore_oci_manifest_free(). Returns 0,
 * IMGSTORE_EINVALID naming what is wrong, IMGSTORE_ERROR.
 */
int imgstore_schema_oci_parse(imgstore_oci_manifest **out, const char *buf, size_t len);

void imgstore_oci_manifest_free(imgstore_oci_manifest *manifest);

/**
 * Read a digest "sha256:<64 lower-case hex>" into `hex` (65 bytes). Returns 0 or
 * IMGSTORE_EINVALID (another algorithm, or malformed).
 */
int imgstore_schema_oci_digest(char *hex, const char *digest);

#endif
