/*  sq_migrate: forward-only schema migrations embedded in the broker.
 *
 *  sql/NNNN_name.sql files are compiled into sq_migrations[] (in apply
 *  order) by broker/embed_sql.cmake. sq_migrate_apply() applies the ones
 *  not yet in schema_migrations, each in its own transaction under an
 *  advisory lock, so two brokers migrating at once do not race and a
 *  second run is a no-op.
 */
#ifndef SQ_MIGRATE_H
#define SQ_MIGRATE_H

#include "sq_db.h"

typedef struct {
    const char *name; /* file name, e.g. "0001_queue.sql" */
    const char *sql;
} sq_migration_t;

extern const sq_migration_t sq_migrations[];
extern const int sq_n_migrations;

/* Apply pending migrations. OUT n_applied (may be NULL). 0 or SQ_EDB*. */
int sq_migrate_apply(sq_db_t *db, int *n_applied);
/* 0 when every embedded migration is recorded, SQ_ESTATE (with the first
 * missing name in the detail) when the schema is behind. */
int sq_migrate_check(sq_db_t *db);

#endif
