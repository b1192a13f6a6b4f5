/*
 * The one place where libgit2's error codes and messages become imgstore's.
 */
#include "store/store_internal.h"

#include <git2.h>
#include <stdarg.h>
#include <stdio.h>

int imgstore_store__git_error(int git_rc, const char *fmt, ...)
{
    const git_error *git_err = git_error_last();
    char what[512];
    int code;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    switch (git_rc) {
    case GIT_ENOTFOUND:
        code = IMGSTORE_ENOTFOUND;
        break;
    case GIT_EEXISTS:
        code = IMGSTORE_EEXISTS;
        break;
    case GIT_ELOCKED:
    case GIT_EMODIFIED:
        code = IMGSTORE_ELOCKED;
        break;
    case GIT_EINVALID:
    case GIT_EINVALIDSPEC:
        code = IMGSTORE_EINVALID;
        break;
    default:
        code = IMGSTORE_ERROR;
    }
    return imgstore_error_set(code, "%s: %s", what,
                              git_err && git_err->message ? git_err->message : "libgit2 error");
}
