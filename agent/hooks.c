/*
 * The host side of the agent's ops: running the operator's restart and health commands
 * (/bin/sh -c, in their own process group so a timeout kills what they started too), and a
 * health check by URL (GET, 2xx within the timeout). What the commands do is the operator's;
 * what their outcome means is agent.c's.
 */
#include "agent/agent_internal.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int imgstore_agent_run_command(const char *command, char *const *env, unsigned timeout_seconds,
                               void *payload)
{
    struct timespec tick = {0, 20 * 1000 * 1000};
    pid_t pid, done;
    unsigned waited_ms = 0;
    int status = 0;

    (void)payload;
    if (!command)
        return imgstore_error_set(IMGSTORE_EINVALID, "no command");
    pid = fork();
    if (pid < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        for (size_t i = 0; env && env[i]; i++)
            putenv(env[i]); /* the child's own copy of the environment */
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    for (;;) {
        done = waitpid(pid, &status, WNOHANG);
        if (done == pid)
            break;
        if (done < 0 && errno != EINTR)
            return imgstore_error_set(IMGSTORE_ERROR, "waitpid: %s", strerror(errno));
        if (waited_ms >= timeout_seconds * 1000u) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            return imgstore_error_set(IMGSTORE_ERROR, "'%s' did not end within %u s (killed)",
                                      command, timeout_seconds);
        }
        nanosleep(&tick, NULL);
        waited_ms += 20;
    }
    /* whatever it left behind in its group goes with it (a hook that backgrounds the VM must
     * setsid it, docs/agent.md) */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return imgstore_error_set(IMGSTORE_ERROR, "'%s' exited with %d", command,
                                  WEXITSTATUS(status));
    return imgstore_error_set(IMGSTORE_ERROR, "'%s' killed by signal %d", command,
                              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

static int health_url(const char *url, unsigned timeout_seconds)
{
    CURL *curl = curl_easy_init();
    CURLcode rc;
    long status = 0;
    int err = 0;

    if (!curl)
        return imgstore_error_set(IMGSTORE_ERROR, "curl_easy_init failed");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)(timeout_seconds ? timeout_seconds : 1));
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    rc = curl_easy_perform(curl);
    if (rc != CURLE_OK) {
        err = imgstore_error_set(IMGSTORE_ERROR, "GET %s: %s", url, curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status > 299)
            err = imgstore_error_set(IMGSTORE_ERROR, "GET %s: HTTP %ld", url, status);
    }
    curl_easy_cleanup(curl);
    return err;
}

int imgstore_agent_health_check(const char *check, char *const *env, unsigned timeout_seconds,
                                void *payload)
{
    if (strncmp(check, "http://", 7) == 0 || strncmp(check, "https://", 8) == 0)
        return health_url(check, timeout_seconds);
    return imgstore_agent_run_command(check, env, timeout_seconds, payload);
}
