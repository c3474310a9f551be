/*  Helpers shared by the scheduler's process-level tests. */
#define _DEFAULT_SOURCE /* usleep */
#define _XOPEN_SOURCE 700 /* nftw */
#include "sched_testutil.h"

#include "sq_error.h"
#include "sq_test.h"

#include <fcntl.h>
#include <ftw.h>
#include <spawn.h>
#include <stdlib.h>

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

extern char **environ;

const char *
sched_scrape(int port, char *buf, size_t size)
{
    buf[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {2, 0}; /* a stuck scheduler must not stall the test */
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
        if (write(fd, req, strlen(req)) > 0) {
            size_t n = 0;
            ssize_t r;
            while (n < size - 1 && (r = read(fd, buf + n, size - 1 - n)) > 0)
                n += (size_t)r;
            buf[n] = '\0';
        }
    }
    if (fd >= 0)
        close(fd);
    return buf;
}

int
sched_wait_metric(int port, const char *needle, int timeout_ms)
{
    static char buf[65536];
    for (int64_t end = sq_test_now_ms() + timeout_ms; sq_test_now_ms() < end; usleep(50000))
        if (strstr(sched_scrape(port, buf, sizeof buf), needle))
            return 1;
    fprintf(stderr, "metric not seen: %s\n", needle);
    return 0;
}

const char *
sched_sql_one(sq_db_t *db, const char *sql)
{
    static char out[2048];
    PGresult *res = NULL;
    out[0] = '\0';
    if (sq_db_exec(db, sql, 0, NULL, &res) == 0 && PQntuples(res) > 0)
        snprintf(out, sizeof out, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return out;
}

int
sched_sql_file(sq_db_t *db, const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    char *sql = calloc(1, 1 << 20);
    size_t n = f && sql ? fread(sql, 1, (1 << 20) - 1, f) : 0;
    int rc = n > 0 ? sq_db_exec_script(db, sql) : SQ_FAIL(SQ_EIO, "%s: cannot read", path);
    if (f)
        fclose(f);
    free(sql);
    return rc;
}

static int
s_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

void
sched_rm_tree(const char *dir)
{
    if (nftw(dir, s_remove, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

int
sched_wait_sql(sq_db_t *db, const char *sql, const char *want, int timeout_ms)
{
    for (int64_t end = sq_test_now_ms() + timeout_ms; sq_test_now_ms() < end; usleep(50000))
        if (strcmp(sched_sql_one(db, sql), want) == 0)
            return 1;
    fprintf(stderr, "timed out: %s -> \"%s\", want \"%s\"\n", sql, sched_sql_one(db, sql),
            want);
    return 0;
}

int
sched_db_create(const char *base, const char *sql_dir, const char *prefix, char *dbname,
                size_t dbname_size, char *conninfo, size_t conninfo_size, sq_db_t **db)
{
    snprintf(dbname, dbname_size, "%s_%d", prefix, (int)getpid());
    char sql[256];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", dbname);
    if (sq_db_connect(base, 10000, db) || sq_db_exec_script(*db, sql)) {
        sq_db_destroy(db);
        return -1;
    }
    sq_db_destroy(db);
    snprintf(conninfo, conninfo_size, "%s dbname=%s", base, dbname);
    if (sq_db_connect(conninfo, 10000, db))
        return -1;
    return sched_sql_file(*db, sql_dir, "0001_queue.sql") ||
                   sched_sql_file(*db, sql_dir, "0010_scheduler.sql") ||
                   sched_sql_file(*db, sql_dir, "0012_scaling_event_key.sql")
               ? -1
               : 0;
}

void
sched_db_drop(const char *base, const char *dbname, sq_db_t **db)
{
    sq_db_destroy(db);
    char sql[256];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", dbname);
    if (sq_db_connect(base, 10000, db) == 0)
        sq_db_exec_script(*db, sql);
    sq_db_destroy(db);
}

pid_t
sched_spawn_logged(char *const argv[], const char *log)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}
