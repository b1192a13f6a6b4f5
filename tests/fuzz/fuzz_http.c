/*
 * The request header parsers of file downloads (server/http.c): Range against a file size,
 * If-None-Match and If-Range against the file's ETag, and the percent-decoding of a path
 * segment. The first byte and the next eight make the file size (a right shift of a 64-bit
 * value, so that small sizes and the edges near 2^64 are both common); the rest is four
 * lines: Range, If-None-Match, If-Range, a path segment. The answers must keep to their
 * contracts: a satisfiable range lies inside the file, our own ETag always matches.
 */
#include "fuzz_util.h"
#include "server/server_internal.h"

#define ETAG "\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\""

/* The next line of *text (cut at '\n', which is replaced by NUL), or NULL at the end. */
static char *next_line(char **text)
{
    char *line = *text, *newline;

    if (!line)
        return NULL;
    if ((newline = strchr(line, '\n'))) {
        *newline = '\0';
        *text = newline + 1;
    } else {
        *text = NULL;
    }
    return line;
}

static void check_range(const char *header, uint64_t size)
{
    uint64_t start = 0, end = 0;
    int range = imgstore_server__parse_range(&start, &end, header, size);

    FUZZ_CHECK(range == -1 || range == 0 || range == 1);
    if (range == 1) {
        FUZZ_CHECK(start < end && end <= size);
        FUZZ_CHECK(strncmp(header, "bytes=", 6) == 0);
    }
    if (range != 0)
        FUZZ_CHECK(header != NULL && strchr(header, ',') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text, *rest, *range, *if_none_match, *if_range, *segment;
    uint64_t raw = 0, file_size;
    char *decoded;

    if (size < 9)
        return 0;
    for (int i = 0; i < 8; i++)
        raw |= (uint64_t)data[1 + i] << (8 * i);
    file_size = raw >> (data[0] & 63);
    FUZZ_CHECK((text = malloc(size - 9 + 1)) != NULL);
    memcpy(text, data + 9, size - 9);
    text[size - 9] = '\0';
    rest = text;
    range = next_line(&rest);
    if_none_match = next_line(&rest);
    if_range = next_line(&rest);
    segment = next_line(&rest);

    check_range(range, file_size);
    check_range(NULL, file_size);
    FUZZ_CHECK(imgstore_server__parse_range(&raw, &raw, "bytes=0-", file_size) ==
               (file_size ? 1 : -1));

    FUZZ_CHECK(!imgstore_server__etag_matches(NULL, ETAG));
    FUZZ_CHECK(imgstore_server__etag_matches(ETAG, ETAG));
    FUZZ_CHECK(imgstore_server__etag_matches("*", ETAG));
    if (if_none_match) {
        bool match = imgstore_server__etag_matches(if_none_match, ETAG);

        FUZZ_CHECK(match == (strstr(if_none_match, ETAG) || strcmp(if_none_match, "*") == 0));
        FUZZ_CHECK(!imgstore_server__etag_matches(if_none_match, ""));
    }
    FUZZ_CHECK(imgstore_server__if_range_allows(NULL, ETAG));
    FUZZ_CHECK(imgstore_server__if_range_allows(ETAG, ETAG));
    if (if_range)
        FUZZ_CHECK(imgstore_server__if_range_allows(if_range, ETAG) ==
                   (strcmp(if_range, ETAG) == 0));

    if (segment && (decoded = imgstore_server__decode_segment(segment, strlen(segment)))) {
        FUZZ_CHECK(strlen(decoded) <= strlen(segment));
        free(decoded);
    }
    free(text);
    return 0;
}
