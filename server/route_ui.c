/*
 * The status page (issue #12): read-only HTML pages over the same store calls as the API,
 * for a person with a browser. The images (GET / and /ui/), one image's channels and a page
 * of its versions (/ui/images/{name}), one version's files, provenance and release
 * signatures (/ui/images/{name}/{version}), and one channel's state, deploy signatures and
 * a page of its moves with who made each and why (/ui/channels/{name}/{channel}).
 *
 * Every page is a function of the store's tip, its path, its ?before= and ?limit= and the
 * signed-in name, so it goes through the answer cache as the API's reads do. Lists are pages
 * of the store's indexes (versions_page, history_query): no page walks all versions or
 * commits.
 * Not responsible for who may look (ui_auth.c) nor for how markup is escaped (html.c).
 */
#include "server/server_internal.h"
#include "sign/sign.h"
#include "trust/trust.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VERSIONS_PER_PAGE 50 /* ?limit= changes it, up to PAGE_MAX */
#define MOVES_PER_PAGE    25
#define PAGE_MAX          200

typedef enum { PAGE_IMAGES, PAGE_IMAGE, PAGE_VERSION, PAGE_CHANNEL } page_kind;

static page_kind kind_of(const imgstore_server__request *req)
{
    if (req->segment_count == 3)
        return PAGE_IMAGE;
    if (req->segment_count == 4)
        return strcmp(req->segments[1], "images") == 0 ? PAGE_VERSION : PAGE_CHANNEL;
    return PAGE_IMAGES;
}

/* Who signed in through the login form (a bearer client has no session to end). */
static const char *user_of(const imgstore_server__request *req)
{
    return req->answer_variant;
}

static enum MHD_Result error_page(imgstore_server__request *req, int err)
{
    imgstore_server__html html = {0};
    unsigned status = imgstore_server__status_for(err);
    const char *message = imgstore_error_last();

    if (status >= 500)
        imgstore_log(IMGSTORE_LOG_ERROR, "server", "request failed path=%s error=%s message=\"%s\"",
                     req->url, imgstore_error_name(err), message);
    imgstore_server__html_begin(&html, status == 404 ? "Not found" : "Error", user_of(req));
    imgstore_server__html_fmt(&html, "<h1>%s</h1><p class=\"error\" id=\"error\">%s</p>",
                              status == 404 ? "Not found" : "Error",
                              *message ? message : imgstore_error_name(err));
    imgstore_server__html_raw(&html, "<p><a href=\"/ui/\">All images</a></p>");
    imgstore_server__html_end(&html);
    return imgstore_server__reply_html(req, status, &html);
}

/* The trust status as a badge; `id` (NULL: none) names it for tests and links. */
static void badge(imgstore_server__html *html, const imgstore_trust_status *trust, const char *id)
{
    if (id)
        imgstore_server__html_fmt(html, "<span id=\"%s\">", id);
    if (trust->trusted)
        imgstore_server__html_fmt(html,
                                  "<span class=\"badge ok\">verified: %zu of %u signatures "
                                  "needed</span>",
                                  trust->valid, trust->threshold);
    else
        imgstore_server__html_fmt(html,
                                  "<span class=\"badge bad\">not trusted: %zu of %u signatures "
                                  "needed</span>",
                                  trust->valid, trust->threshold);
    if (trust->invalid)
        imgstore_server__html_fmt(html,
                                  " <span class=\"badge warn\">%zu signature files that do "
                                  "not verify</span>",
                                  trust->invalid);
    if (id)
        imgstore_server__html_raw(html, "</span>");
}

static void size_cell(imgstore_server__html *html, uint64_t bytes)
{
    char human[32];

    imgstore_server__html_fmt(html, "<td class=\"nowrap\" title=\"%llu bytes\">%s</td>",
                              (unsigned long long)bytes,
                              imgstore_size_human(human, sizeof(human), bytes));
}

/* The trust policy every status on the pages is judged under: its roles' thresholds and
 * keys (by fingerprint, as `imgstore trust show` and ssh-keygen name them). */
static int policy_section(imgstore_server__html *html, imgstore_store *store)
{
    imgstore_policy *policy = NULL;
    char digest[65];
    int err;

    if ((err = imgstore_store_policy_get(&policy, digest, store)) < 0)
        return err;
    imgstore_server__html_fmt(html, "<h2>Trust policy</h2>\n<table id=\"policy\"><tr><th>Role</th>"
                                    "<th>Signatures needed</th><th>Keys</th></tr>\n");
    for (int role = 0; role < IMGSTORE_ROLE_COUNT; role++) {
        const imgstore_policy_role *r = &policy->roles[role];

        imgstore_server__html_fmt(html, "<tr><td>%s</td><td>%u of %zu</td><td>",
                                  imgstore_schema_role_name((imgstore_role)role), r->threshold,
                                  r->key_count);
        for (size_t k = 0; k < r->key_count; k++) {
            imgstore_sign_pubkey key;
            char id[IMGSTORE_SIGN_KEYID_MAX];

            if (imgstore_sign_pubkey_parse(&key, r->keys[k]) < 0) {
                imgstore_error_clear(); /* a policy the store took holds parsable keys */
                continue;
            }
            imgstore_sign_pubkey_fingerprint(id, &key);
            imgstore_server__html_fmt(html, "%s<code>%s</code> %s", k ? "<br>" : "", id,
                                      key.comment);
        }
        imgstore_server__html_raw(html, "</td></tr>\n");
    }
    imgstore_server__html_fmt(html,
                              "</table>\n<p class=\"muted\">Policy version %llu, SHA-256 "
                              "<code>%s</code>.</p>\n",
                              (unsigned long long)policy->version, digest);
    imgstore_policy_free(policy);
    return 0;
}

/* ---- / and /ui/ ------------------------------------------------------------------------- */

static int images_page(imgstore_server__html *html, imgstore_store *store)
{
    char **names = NULL;
    size_t count = 0;
    int err;

    if ((err = imgstore_store_list_images(&names, &count, store)) < 0)
        return err;
    imgstore_server__html_raw(html, "<h1>Images</h1>\n");
    if (!count)
        imgstore_server__html_raw(html, "<p class=\"muted\" id=\"empty\">No images yet: "
                                        "<code>imgstore push</code> adds one.</p>\n");
    else
        imgstore_server__html_raw(html, "<table id=\"images\"><tr><th>Image</th><th>Versions</th>"
                                        "<th>Newest</th><th>Channels</th></tr>\n");
    for (size_t i = 0; i < count && err == 0; i++) {
        imgstore_version_row *newest = NULL;
        size_t rows = 0, total = 0, channel_count = 0;
        char **channels = NULL;

        /* the newest row and the count: one index read per image */
        if ((err = imgstore_store_versions_page(&newest, &rows, &total, store, names[i], SIZE_MAX,
                                                1)) < 0 ||
            (err = imgstore_store_list_channels(&channels, &channel_count, store, names[i])) < 0) {
            imgstore_version_rows_free(newest, rows);
            break;
        }
        imgstore_server__html_fmt(html,
                                  "<tr><td><a href=\"/ui/images/%s\">%s</a></td><td>%zu</td>"
                                  "<td><a href=\"/ui/images/%s/%s\">%s</a></td><td>",
                                  names[i], names[i], total, names[i],
                                  rows ? newest[0].version : "", rows ? newest[0].version : "");
        for (size_t c = 0; c < channel_count; c++) {
            imgstore_channel_state *state = NULL;

            /* a state that cannot be read is left out here, as in GET /v1/images; its
             * channel's own page says why */
            if (imgstore_store_channel_get(&state, store, names[i], channels[c]) < 0) {
                imgstore_error_clear();
                continue;
            }
            imgstore_server__html_fmt(html, "%s<a href=\"/ui/channels/%s/%s\">%s</a>: %s",
                                      c ? ", " : "", names[i], channels[c], channels[c],
                                      state->version);
            imgstore_channel_state_free(state);
        }
        imgstore_server__html_raw(html, "</td></tr>\n");
        imgstore_strings_free(channels, channel_count);
        imgstore_version_rows_free(newest, rows);
    }
    if (count)
        imgstore_server__html_raw(html, "</table>\n");
    imgstore_strings_free(names, count);
    if (err == 0)
        err = policy_section(html, store);
    return err;
}

/* ---- /ui/images/{name} ------------------------------------------------------------------ */

static void crumbs(imgstore_server__html *html, const char *name, const char *last)
{
    imgstore_server__html_fmt(html,
                              "<p class=\"crumbs\"><a href=\"/ui/\">Images</a> / "
                              "<a href=\"/ui/images/%s\">%s</a>",
                              name, name);
    if (last)
        imgstore_server__html_fmt(html, " / %s", last);
    imgstore_server__html_raw(html, "</p>\n");
}

static int image_channels(imgstore_server__html *html, imgstore_store *store, const char *name)
{
    char **channels = NULL;
    size_t count = 0;
    int err;

    if ((err = imgstore_store_list_channels(&channels, &count, store, name)) < 0)
        return err;
    imgstore_server__html_raw(html, "<h2>Channels</h2>\n");
    if (!count)
        imgstore_server__html_raw(html, "<p class=\"muted\">No channel runs this image yet.</p>\n");
    else
        imgstore_server__html_raw(html, "<table id=\"channels\"><tr><th>Channel</th><th>Runs</th>"
                                        "<th>Moved</th><th>By</th><th>Why</th>"
                                        "<th>Deploy signatures</th></tr>\n");
    for (size_t i = 0; i < count && err == 0; i++) {
        imgstore_channel_state *state = NULL;
        imgstore_trust_status trust;

        /* one image's page lists every channel or fails, as GET /v1/images/{name} does */
        if ((err = imgstore_store_channel_get(&state, store, name, channels[i])) < 0 ||
            (err = imgstore_store_channel_trust(&trust, store, name, channels[i])) < 0) {
            imgstore_channel_state_free(state);
            break;
        }
        imgstore_server__html_fmt(html,
                                  "<tr><td><a href=\"/ui/channels/%s/%s\">%s</a></td>"
                                  "<td><a href=\"/ui/images/%s/%s\">%s</a></td><td>%s</td>"
                                  "<td>%s %s</td><td>%s</td><td>",
                                  name, channels[i], channels[i], name, state->version,
                                  state->version, state->time, state->action, state->actor,
                                  state->reason ? state->reason : "");
        badge(html, &trust, NULL);
        imgstore_server__html_raw(html, "</td></tr>\n");
        imgstore_channel_state_free(state);
    }
    if (count)
        imgstore_server__html_raw(html, "</table>\n");
    imgstore_strings_free(channels, count);
    return err;
}

static int image_page(imgstore_server__html *html, imgstore_store *store, const char *name,
                      uint64_t before, size_t limit)
{
    imgstore_version_row *rows = NULL;
    imgstore_trust_status trust;
    size_t count = 0, total = 0;
    int err;

    if ((err = imgstore_store_versions_page(&rows, &count, &total, store, name,
                                            before ? (size_t)before : SIZE_MAX,
                                            limit ? limit : VERSIONS_PER_PAGE)) < 0)
        return err;
    crumbs(html, name, NULL);
    imgstore_server__html_fmt(html, "<h1>%s</h1>\n", name);
    if ((err = image_channels(html, store, name)) < 0)
        goto done;
    imgstore_server__html_fmt(html,
                              "<h2>Versions</h2>\n<p class=\"muted\">%zu versions, newest "
                              "first.</p>\n<table id=\"versions\"><tr><th>Version</th>"
                              "<th>Created</th><th>Files</th><th>Size</th>"
                              "<th>Release signatures</th></tr>\n",
                              total);
    for (size_t i = 0; i < count; i++) {
        imgstore_server__html_fmt(html,
                                  "<tr><td><a href=\"/ui/images/%s/%s\">%s</a></td><td>%s</td>"
                                  "<td>%zu</td>",
                                  name, rows[i].version, rows[i].version, rows[i].created,
                                  rows[i].files);
        size_cell(html, rows[i].size);
        /* a pending version (too few release signatures) stands out in the list: one
         * signature check per row of the page */
        if ((err = imgstore_store_version_trust(&trust, store, name, rows[i].version)) < 0)
            goto done;
        imgstore_server__html_fmt(html,
                                  "<td><span class=\"badge %s\">%s %zu of %u</span></td>"
                                  "</tr>\n",
                                  trust.trusted ? "ok" : "bad",
                                  trust.trusted ? "verified" : "pending", trust.valid,
                                  trust.threshold);
    }
    imgstore_server__html_raw(html, "</table>\n<p class=\"pager\">");
    if (before)
        imgstore_server__html_fmt(html, "<a href=\"/ui/images/%s\" id=\"newest\">Newest</a>", name);
    /* rows count from the oldest (0): the last row's position is the next page's before */
    if (count && rows[count - 1].row > 0) {
        imgstore_server__html_fmt(html, "<a href=\"/ui/images/%s?before=%zu", name,
                                  rows[count - 1].row);
        if (limit)
            imgstore_server__html_fmt(html, "&amp;limit=%zu", limit);
        imgstore_server__html_raw(html, "\" id=\"older\">Older versions</a>");
    }
    imgstore_server__html_raw(html, "</p>\n");
done:
    imgstore_version_rows_free(rows, count);
    return err;
}

/* ---- /ui/images/{name}/{version} -------------------------------------------------------- */

static void file_details(imgstore_server__html *html, const imgstore_file_info *info)
{
    if (info->arch[0])
        imgstore_server__html_fmt(html, "%s ", info->arch);
    if (info->kernel_version[0])
        imgstore_server__html_fmt(html, "Linux %s ", info->kernel_version);
    if (info->boot_protocol[0])
        imgstore_server__html_fmt(html, "(boot protocol %s) ", info->boot_protocol);
    if (info->solo5_target[0])
        imgstore_server__html_fmt(html, "Solo5 %s ABI %u, %u devices ", info->solo5_target,
                                  info->solo5_abi_version, info->device_count);
    if (info->xen_mode[0])
        imgstore_server__html_fmt(html, "Xen %s ", info->xen_mode);
    if (info->volume_id[0])
        imgstore_server__html_fmt(html, "volume %s ", info->volume_id);
    if (info->partition_table[0])
        imgstore_server__html_fmt(html, "%s partitions ", info->partition_table);
    if (info->hybrid)
        imgstore_server__html_raw(html, "hybrid ");
    if (info->efi)
        imgstore_server__html_raw(html, "EFI ");
    if (info->virtual_size) {
        char human[32];

        imgstore_server__html_fmt(html, "virtual size %s ",
                                  imgstore_size_human(human, sizeof(human), info->virtual_size));
    }
    if (info->compression[0] && strcmp(info->compression, "none") != 0)
        imgstore_server__html_fmt(html, "%s ", info->compression);
    if (info->text[0])
        imgstore_server__html_fmt(html, "<code>%s</code>", info->text);
}

static int version_page(imgstore_server__html *html, imgstore_store *store, const char *name,
                        const char *version)
{
    imgstore_manifest *m = NULL;
    imgstore_trust_status trust;
    char digest[65], **channels = NULL;
    size_t channel_count = 0;
    bool running = false;
    int err;

    if ((err = imgstore_store_manifest_get(&m, digest, store, name, version)) < 0 ||
        (err = imgstore_store_version_trust(&trust, store, name, version)) < 0 ||
        (err = imgstore_store_list_channels(&channels, &channel_count, store, name)) < 0)
        goto done;
    crumbs(html, name, version);
    imgstore_server__html_fmt(html,
                              "<h1>%s %s</h1>\n<dl id=\"version\"><dt>Release signatures</dt>"
                              "<dd>",
                              name, version);
    badge(html, &trust, "release");
    imgstore_server__html_fmt(html,
                              "</dd><dt>Manifest SHA-256</dt><dd class=\"digest\">%s</dd>"
                              "<dt>Created</dt><dd>%s</dd><dt>Built by</dt><dd>%s</dd>",
                              digest, m->created, m->builder ? m->builder : "");
    if (m->source_repository)
        imgstore_server__html_fmt(html,
                                  "<dt>Source</dt><dd id=\"source\"><code>%s</code> at "
                                  "<code>%s</code></dd>",
                                  m->source_repository, m->source_commit ? m->source_commit : "");
    for (size_t i = 0; i < m->label_count; i++)
        imgstore_server__html_fmt(html, "<dt>Label <code>%s</code></dt><dd class=\"label\">%s</dd>",
                                  m->labels[i].key, m->labels[i].value);
    if (m->boot.kernel)
        imgstore_server__html_fmt(html, "<dt>Boots</dt><dd>kernel %s, initrd %s, cmdline %s</dd>",
                                  m->boot.kernel, m->boot.initrd ? m->boot.initrd : "none",
                                  m->boot.cmdline ? m->boot.cmdline : "none");
    imgstore_server__html_raw(html, "<dt>Running on</dt><dd id=\"running\">");
    /* the image's channels (a handful), each one state read */
    for (size_t i = 0; i < channel_count; i++) {
        imgstore_channel_state *state = NULL;

        if (imgstore_store_channel_get(&state, store, name, channels[i]) < 0) {
            imgstore_error_clear();
            continue;
        }
        if (strcmp(state->version, version) == 0) {
            imgstore_server__html_fmt(html, "%s<a href=\"/ui/channels/%s/%s\">%s</a>",
                                      running ? ", " : "", name, channels[i], channels[i]);
            running = true;
        }
        imgstore_channel_state_free(state);
    }
    if (!running)
        imgstore_server__html_raw(html, "<span class=\"muted\">no channel</span>");
    imgstore_server__html_fmt(html,
                              "</dd></dl>\n<h2>Files</h2>\n<table id=\"files\"><tr><th>File</th>"
                              "<th>Kind</th><th>Format</th><th>Details</th><th>Size</th>"
                              "<th>Chunks</th><th>SHA-256</th></tr>\n");
    for (size_t i = 0; i < m->file_count; i++) {
        const imgstore_manifest_file *f = &m->files[i];

        imgstore_server__html_fmt(
            html, "<tr><td><code class=\"name\">%s</code></td><td>%s</td><td>%s</td><td>", f->path,
            f->info.kind, f->info.format);
        file_details(html, &f->info);
        imgstore_server__html_raw(html, "</td>");
        size_cell(html, f->size);
        imgstore_server__html_fmt(html, "<td>%zu</td><td class=\"digest\">%s</td></tr>\n",
                                  f->chunk_count, f->sha256);
    }
    imgstore_server__html_raw(html, "</table>\n");
done:
    imgstore_strings_free(channels, channel_count);
    imgstore_manifest_free(m);
    return err;
}

/* ---- /ui/channels/{name}/{channel} ------------------------------------------------------ */

#define AGENT_EVENTS 20 /* the newest reports listed under the hosts' latest */

static const char *json_text(json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

static void report_cells(imgstore_server__html *html, json_t *report, const char *running)
{
    const char *state = json_text(report, "state"), *version = json_text(report, "version");

    /* verified: the poster's token is bound to this host (issue #12); still not signed */
    imgstore_server__html_raw(html, json_is_true(json_object_get(report, "host_verified"))
                                        ? "<td><span class=\"badge ok\">verified</span></td>"
                                        : "<td><span class=\"badge warn\">unverified</span></td>");
    imgstore_server__html_fmt(html, "<td><span class=\"badge %s\">%s</span></td><td>%s",
                              !state                              ? "bad"
                              : strcmp(state, "ok") == 0          ? "ok"
                              : strcmp(state, "rolled-back") == 0 ? "warn"
                                                                  : "bad",
                              state ? state : "?", version ? version : "none");
    if (running && version && strcmp(version, running) != 0)
        imgstore_server__html_raw(html,
                                  " <span class=\"badge warn\">not what the channel runs</span>");
    imgstore_server__html_fmt(html, "</td><td>%s</td><td>%s</td>",
                              json_text(report, "attempted") ? json_text(report, "attempted") : "",
                              json_text(report, "message") ? json_text(report, "message") : "");
}

/*
 * What each host's agent says it runs (issue #11): unsigned claims kept beside the store, not
 * in its history, so shown as such, and so the channel page is not a function of the tip
 * alone (it is not kept in the answer cache).
 */
static int agent_reports(imgstore_server__html *html, imgstore_store *store, const char *name,
                         const char *channel, const char *running)
{
    json_t *hosts = NULL, *events = NULL, *report;
    size_t i;
    int err;

    if ((err = imgstore_store_reports_get(&hosts, &events, store, name, channel, AGENT_EVENTS)) < 0)
        return err;
    imgstore_server__html_raw(html, "<h2>Agents</h2>\n");
    if (!json_array_size(hosts)) {
        imgstore_server__html_raw(html, "<p class=\"muted\" id=\"agents\">No agent has reported "
                                        "on this channel.</p>\n");
        goto done;
    }
    imgstore_server__html_raw(html,
                              "<p class=\"muted\">What each host's agent says it runs: unsigned "
                              "claims (the signed history above is what was released). A host "
                              "is verified when the report came with a token bound to that "
                              "host; anyone with an unbound report token can claim an "
                              "unverified one.</p>\n<table id=\"agents\"><tr><th>Host</th>"
                              "<th>Host check</th><th>State</th>"
                              "<th>Runs</th><th>Tried</th><th>Message</th><th>Reported</th>"
                              "<th>By</th></tr>\n");
    json_array_foreach(hosts, i, report)
    {
        imgstore_server__html_fmt(html, "<tr><td>%s</td>", json_text(report, "host"));
        report_cells(html, report, running);
        imgstore_server__html_fmt(html, "<td class=\"nowrap\">%s</td><td>%s</td></tr>\n",
                                  json_text(report, "time"), json_text(report, "by"));
    }
    imgstore_server__html_raw(
        html, "</table>\n<h2>Latest reports</h2>\n<table "
              "id=\"agent-events\"><tr><th>Reported</th><th>Host</th>"
              "<th>Host check</th><th>State</th><th>Runs</th><th>Tried</th><th>Message</th>"
              "</tr>\n");
    json_array_foreach(events, i, report)
    {
        imgstore_server__html_fmt(html, "<tr><td class=\"nowrap\">%s</td><td>%s</td>",
                                  json_text(report, "time"), json_text(report, "host"));
        report_cells(html, report, NULL);
        imgstore_server__html_raw(html, "</tr>\n");
    }
    imgstore_server__html_raw(html, "</table>\n");
done:
    json_decref(hosts);
    json_decref(events);
    return 0;
}

static int channel_page(imgstore_server__html *html, imgstore_store *store, const char *name,
                        const char *channel, uint64_t before, size_t limit)
{
    imgstore_history_query q = {
        .channel = channel, .before = before, .limit = limit ? limit : MOVES_PER_PAGE};
    imgstore_history_entry *entries = NULL;
    imgstore_channel_state *state = NULL;
    imgstore_policy *policy = NULL;
    imgstore_trust_status trust;
    size_t count = 0;
    uint64_t next = 0;
    int err;

    if ((err = imgstore_store_channel_get(&state, store, name, channel)) < 0 ||
        (err = imgstore_store_channel_trust(&trust, store, name, channel)) < 0 ||
        (err = imgstore_store_history_query(&entries, &count, &next, store, name, &q)) < 0 ||
        (err = imgstore_store_policy_get(&policy, NULL, store)) < 0)
        goto done;
    crumbs(html, name, NULL);
    imgstore_server__html_fmt(html,
                              "<h1>%s · channel %s</h1>\n<dl id=\"state\"><dt>Runs</dt>"
                              "<dd><a href=\"/ui/images/%s/%s\" id=\"runs\">%s</a></dd>"
                              "<dt>Deploy signatures</dt><dd>",
                              name, channel, name, state->version, state->version);
    badge(html, &trust, "deploy");
    imgstore_server__html_fmt(html,
                              "</dd><dt>Last move</dt><dd id=\"last-move\">%s by <b>%s</b> at %s"
                              "</dd><dt>Why</dt><dd id=\"reason\">%s</dd><dt>Sequence</dt>"
                              "<dd>%llu</dd><dt>Manifest SHA-256</dt><dd class=\"digest\">%s</dd>",
                              state->action, state->actor, state->time,
                              state->reason ? state->reason : "(no reason given)",
                              (unsigned long long)state->sequence, state->manifest_sha256);
    if (state->previous_version)
        imgstore_server__html_fmt(html, "<dt>Before</dt><dd>%s</dd>", state->previous_version);
    if (state->expires)
        imgstore_server__html_fmt(html, "<dt>Signed state expires</dt><dd>%s</dd>", state->expires);
    if (state->stack_count) {
        imgstore_server__html_raw(html, "<dt>Rollback goes to</dt><dd id=\"stack\">");
        for (size_t i = 0; i < state->stack_count; i++)
            imgstore_server__html_fmt(html, "%s%s", i ? ", then " : "", state->stack[i]);
        imgstore_server__html_raw(html, "</dd>");
    }
    imgstore_server__html_raw(html,
                              "</dl>\n<h2>History</h2>\n<table id=\"history\"><tr><th>#</th>"
                              "<th>Time</th><th>Action</th><th>Version</th><th>From</th>"
                              "<th>By</th><th>Why</th><th>Deploy signatures</th><th>Commit</th>"
                              "</tr>\n");
    for (size_t i = 0; i < count; i++) {
        const imgstore_history_entry *e = &entries[i];
        const imgstore_channel_state *s = e->state;
        char when[32], commit[13];

        imgstore_time_rfc3339(when, sizeof(when), e->time);
        memcpy(commit, e->commit, sizeof(commit) - 1); /* the short id git shows */
        commit[sizeof(commit) - 1] = '\0';
        imgstore_server__html_fmt(
            html,
            "<tr><td>%llu</td><td class=\"nowrap\">%s</td><td>%s</td><td><a "
            "href=\"/ui/images/%s/%s\">%s</a></td><td>%s</td><td>%s</td><td>%s</td><td>",
            (unsigned long long)e->op, s ? s->time : when, s ? s->action : e->action, name,
            e->version ? e->version : "", e->version ? e->version : "",
            s && s->previous_version ? s->previous_version : "", s ? s->actor : e->actor,
            s && s->reason ? s->reason : "");
        /* each move's stored signatures over its exact bytes, checked under the current
         * policy (a key removed since no longer counts), as a remote client checks them */
        if (e->state_bytes &&
            imgstore_trust_signatures_count(&trust, policy, IMGSTORE_ROLE_DEPLOY,
                                            (const char *const *)e->signatures, e->signature_count,
                                            e->state_bytes, e->state_len) == 0)
            imgstore_server__html_fmt(
                html, "<span class=\"badge %s\">%s %zu of %u</span>", trust.trusted ? "ok" : "bad",
                trust.trusted ? "verified" : "not trusted", trust.valid, trust.threshold);
        else
            imgstore_server__html_fmt(html, "%zu", e->signature_count);
        imgstore_error_clear();
        imgstore_server__html_fmt(html, "</td><td><code>%s</code></td></tr>\n", commit);
    }
    imgstore_server__html_raw(html, "</table>\n<p class=\"pager\">");
    if (before)
        imgstore_server__html_fmt(html, "<a href=\"/ui/channels/%s/%s\" id=\"newest\">Newest</a>",
                                  name, channel);
    if (next) {
        imgstore_server__html_fmt(html, "<a href=\"/ui/channels/%s/%s?before=%llu", name, channel,
                                  (unsigned long long)next);
        if (limit)
            imgstore_server__html_fmt(html, "&amp;limit=%zu", limit);
        imgstore_server__html_raw(html, "\" id=\"older\">Older moves</a>");
    }
    imgstore_server__html_raw(html, "</p>\n");
    err = agent_reports(html, store, name, channel, state->version);
done:
    imgstore_policy_free(policy);
    imgstore_history_free(entries, count);
    imgstore_channel_state_free(state);
    return err;
}

/* ---- the route ------------------------------------------------------------------------ */

static int check_args(imgstore_server__request *req, page_kind kind, uint64_t *before,
                      uint64_t *limit)
{
    int err = 0;

    *before = *limit = 0;
    if (kind != PAGE_IMAGES &&
        (err = imgstore_schema_check_name(IMGSTORE_NAME_IMAGE, req->segments[2])) < 0)
        return err;
    if (kind == PAGE_VERSION)
        err = imgstore_schema_check_name(IMGSTORE_NAME_VERSION, req->segments[3]);
    else if (kind == PAGE_CHANNEL)
        err = imgstore_schema_check_name(IMGSTORE_NAME_CHANNEL, req->segments[3]);
    if (err < 0)
        return err;
    if ((err = imgstore_server__query_u64(before, req, "before")) < 0 && err != IMGSTORE_ENOTFOUND)
        return err;
    if ((err = imgstore_server__query_u64(limit, req, "limit")) < 0 && err != IMGSTORE_ENOTFOUND)
        return err;
    if (err == 0 && (*limit == 0 || *limit > PAGE_MAX))
        return imgstore_error_set(IMGSTORE_EINVALID, "query limit: 1 to %d", PAGE_MAX);
    return 0;
}

enum MHD_Result imgstore_server__route_ui(imgstore_server__request *req)
{
    imgstore_server__html html = {0};
    page_kind kind = kind_of(req);
    imgstore_store *store;
    uint64_t before, limit;
    char *title;
    enum MHD_Result result;
    int err;

    if (!imgstore_server__ui_authorize(req, &result))
        return result;
    /* the arguments are checked before they become part of a cache key */
    if ((err = check_args(req, kind, &before, &limit)) < 0)
        return error_page(req, err);
    /* a channel page lists the agents' reports, kept beside the store rather than in its
     * history: not a function of the tip, so built on every view (on a worker) */
    if (kind == PAGE_CHANNEL && req->cached_only) {
        req->defer = true;
        return MHD_YES;
    }
    if (kind != PAGE_CHANNEL && imgstore_server__answer_cached(req, &result))
        return result;
    if ((err = imgstore_server__store(&store, req)) < 0)
        return error_page(req, err);
    title = kind == PAGE_IMAGES    ? strdup("Images")
            : kind == PAGE_IMAGE   ? strdup(req->segments[2])
            : kind == PAGE_VERSION ? imgstore_strfmt("%s %s", req->segments[2], req->segments[3])
                                   : imgstore_strfmt("%s · %s", req->segments[2], req->segments[3]);
    if (!title)
        return error_page(req, imgstore_error_set(IMGSTORE_ERROR, "out of memory"));
    imgstore_server__html_begin(&html, title, user_of(req));
    free(title);
    switch (kind) {
    case PAGE_IMAGES:
        err = images_page(&html, store);
        break;
    case PAGE_IMAGE:
        err = image_page(&html, store, req->segments[2], before, (size_t)limit);
        break;
    case PAGE_VERSION:
        err = version_page(&html, store, req->segments[2], req->segments[3]);
        break;
    case PAGE_CHANNEL:
        err = channel_page(&html, store, req->segments[2], req->segments[3], before, (size_t)limit);
        break;
    }
    if (err < 0) {
        imgstore_server__html_free(&html);
        return error_page(req, err);
    }
    imgstore_server__html_end(&html);
    return imgstore_server__reply_html(req, MHD_HTTP_OK, &html);
}
