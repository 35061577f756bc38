//! A real PostgreSQL server for one test: `initdb` into a temp dir, `pg_ctl start` on a free
//! loopback port, stopped and deleted on drop. It can be stopped and started again on the same
//! port and data, to test an outage. As root (CI) the server runs as the `postgres` user via
//! `runuser`, since PostgreSQL refuses to run as root. CI installs the server
//! (`apt-get install -y postgresql`); without it the tests fail and say so.
//!
//! `initdb` is the slow part (seconds on a loaded machine), so it runs once into a template
//! cluster under cargo's `target/tmp` and each server starts from a copy of it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub struct PostgresServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    running: bool,
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        let bin = server_bin();
        // In memory where there is a tmpfs: copying and fsyncing a cluster on a busy disk
        // takes seconds, and the data is thrown away anyway.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temp dir for PostgreSQL");
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()));
        }
        let mut server = PostgresServer {
            bin,
            dir,
            port: 0,
            running: false,
        };
        let template = template_cluster(&server.bin);
        // `cp -a` keeps the owner (postgres) and the 0700 mode the server insists on.
        run(Command::new("cp")
            .arg("-a")
            .arg(&template)
            .arg(server.data_dir()));
        // Bind-and-release picks a free port; a rare clash is retried with another.
        for _ in 0..5 {
            server.port = free_port();
            if server.try_start() {
                return server;
            }
        }
        panic!(
            "PostgreSQL did not start on any of 5 ports; log:\n{}",
            server.log()
        );
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs `sql` with `psql`, as another client of the database would; stops on an error.
    pub fn psql(&self, sql: &str) {
        run(self.psql_command(sql).stdout(Stdio::null()));
    }

    /// The single value `sql` selects, as psql prints it unaligned.
    pub fn psql_value(&self, sql: &str) -> String {
        let output = self
            .psql_command(sql)
            .args(["-t", "-A"])
            .output()
            .expect("running psql");
        assert!(output.status.success(), "psql failed: {output:?}");
        String::from_utf8(output.stdout)
            .expect("psql prints UTF-8")
            .trim()
            .to_owned()
    }

    fn psql_command(&self, sql: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q"])
            .args(["-v", "ON_ERROR_STOP=1", "-p"])
            .arg(self.port.to_string())
            .args(["-c", sql]);
        command
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (no checkpoint, connections cut): an outage.
    pub fn stop(&mut self) {
        if self.running {
            let pg_ctl = self.bin.join("pg_ctl");
            let data = self.data_dir();
            self.run_pg_quiet(Command::new(pg_ctl).arg("-D").arg(&data).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]));
            self.running = false;
        }
    }

    /// Starts the stopped server again, on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        assert!(
            self.try_start(),
            "PostgreSQL did not restart on port {}; log:\n{}",
            self.port,
            self.log()
        );
    }

    fn try_start(&mut self) -> bool {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = self.run_pg_quiet(
            Command::new(pg_ctl)
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(options)
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "30", "start"]),
        );
        self.running = out.status.success();
        self.running
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn run_pg_quiet(&self, command: &mut Command) -> Output {
        as_postgres(command, self.dir.path())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A freshly initialised cluster to copy: made once, then reused by every test and run.
fn template_cluster(bin: &Path) -> PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let major = bin
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .unwrap_or("pg");
            let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let template = root.join(format!("postgres-{major}-template"));
            if template.join("PG_VERSION").exists() {
                return template;
            }
            // Built beside it and renamed into place, so a concurrent test binary never
            // copies a half-made cluster.
            let staging = root.join(format!("postgres-{major}-staging-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&staging);
            std::fs::create_dir_all(&staging).expect("a staging dir for the template cluster");
            let as_root = is_root();
            if as_root {
                run(Command::new("chown").arg("postgres:postgres").arg(&staging));
            }
            let data = staging.join("data");
            let mut initdb = Command::new(bin.join("initdb"));
            initdb
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
                // 1 MiB WAL segments instead of 16: less to copy for every test.
                .arg("--wal-segsize=1")
                // The clusters are thrown away after the tests; syncing to disk is wasted time.
                .arg("--no-sync");
            let out = as_postgres(&mut initdb, &staging);
            assert!(
                out.status.success(),
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if std::fs::rename(&data, &template).is_err() && !template.join("PG_VERSION").exists() {
                panic!(
                    "cannot move the template cluster into {}",
                    template.display()
                );
            }
            let _ = std::fs::remove_dir_all(&staging);
            template
        })
        .clone()
}

/// Runs a PostgreSQL tool as the `postgres` user when this process is root.
fn as_postgres(command: &mut Command, cwd: &Path) -> Output {
    let mut command = if is_root() {
        let mut wrapped = Command::new("runuser");
        wrapped.args(["-u", "postgres", "--"]);
        wrapped.arg(command.get_program());
        wrapped.args(command.get_args());
        wrapped
    } else {
        std::mem::replace(command, Command::new("true"))
    };
    command
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("running a PostgreSQL tool")
}

/// The newest installed server's `bin/` (Debian: `/usr/lib/postgresql/<major>/bin`).
fn server_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: these tests need a real server \
             (Debian/Ubuntu: apt-get install -y postgresql)"
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn run(command: &mut Command) {
    let status = command.status().expect("running a setup command");
    assert!(status.success(), "{command:?} failed");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
