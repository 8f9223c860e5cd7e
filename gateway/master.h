/*
 * master — posternd's supervisor: reads the config, recovers the spool,
 * binds the listeners, starts the SMTP workers (dropping privileges in them
 * when started as root), restarts a worker that dies, reloads on SIGHUP
 * (new workers with the new config; old ones drain their sessions) and stops
 * on SIGTERM (workers answer 421 and finish their commits).
 *
 * Called by main.c. Trusts the config file it was given (validated).
 */
#ifndef POSTERN_MASTER_H
#define POSTERN_MASTER_H

/* Runs until SIGTERM/SIGINT. Returns the process exit status. */
int master_run(const char *config_path);

/* posternd -t: loads the config, prints "file:line: message" errors to
 * stderr. Returns 0 when valid, 1 otherwise. */
int master_check_config(const char *config_path);

#endif
