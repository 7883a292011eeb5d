//! Postgres for the tests: `DATABASE_URL`, else 127.0.0.1:5432, else a throwaway cluster started
//! with `initdb`/`pg_ctl`, else a failure saying how to get one. Never a skip. Each test gets a
//! fresh database, dropped when it ends.
//!
//! `TEST_POSTGRES=throwaway` skips the first two, to exercise the throwaway route on a machine
//! that has a server running.

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

/// The server every test database is created on.
struct PgServer {
    /// A URL to a maintenance database of the server.
    admin_url: String,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();

fn server() -> &'static PgServer {
    SERVER.get_or_init(|| match discover() {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    })
}

fn discover() -> Result<PgServer, String> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.is_empty() {
            return Ok(PgServer { admin_url: url });
        }
    }
    let forced_throwaway = std::env::var("TEST_POSTGRES").as_deref() == Ok("throwaway");
    let local: SocketAddr = ([127, 0, 0, 1], 5432).into();
    if !forced_throwaway && TcpStream::connect_timeout(&local, Duration::from_secs(1)).is_ok() {
        return Ok(PgServer {
            admin_url: "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
        });
    }
    match find_pg_bin() {
        Some(_) => start_throwaway(),
        None => {
            let ci = if std::env::var("CI").as_deref() == Ok("true") {
                " (CI=true: a missing Postgres fails the run)"
            } else {
                ""
            };
            Err(format!(
                "no Postgres for the tests{ci}: set DATABASE_URL=postgres://…, run a server on \
                 127.0.0.1:5432, or install initdb and pg_ctl (Debian/Ubuntu: `apt install \
                 postgresql`; macOS: `brew install postgresql`) so the tests can start their own"
            ))
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then /usr/lib/postgresql/*/bin.
fn find_pg_bin() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versioned.sort();
    versioned.reverse();
    in_path
        .into_iter()
        .chain(versioned)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root (initdb and postgres refuse root).
fn pg_command(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

/// A private Postgres cluster started with `initdb`/`pg_ctl` on a free port, owned by the test
/// process: it stops itself and deletes its files when this process exits, and tests that need
/// the database to fail may stop and start it (never the shared server).
pub struct Cluster {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
}

impl Cluster {
    /// Creates and starts a cluster; fails with a message when initdb/pg_ctl are missing.
    pub fn create() -> Result<Cluster, String> {
        let bin = find_pg_bin().ok_or(
            "initdb and pg_ctl are needed to start a private Postgres cluster \
             (Debian/Ubuntu: `apt install postgresql`)",
        )?;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let root = std::env::temp_dir().join(format!("mandate-test-pg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        if running_as_root() {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(&root);
            run(chown, "chown of the cluster directory")?;
        }
        let mut initdb = pg_command(&bin.join("initdb"));
        initdb.arg("-D").arg(root.join("data")).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(initdb, "initdb")?;
        let cluster = Cluster {
            bin,
            root,
            port: free_port(),
        };
        cluster.start()?;
        // A watchdog outlives this process: when it is gone, stop the cluster, remove its files.
        let watchdog = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; '{pg_ctl}' -D '{data}' -m immediate stop; rm -rf '{root}'",
            pid = std::process::id(),
            pg_ctl = cluster.bin.join("pg_ctl").display(),
            data = cluster.root.join("data").display(),
            root = cluster.root.display(),
        );
        let mut sh = pg_command(Path::new("/bin/sh"));
        sh.args(["-c", &watchdog])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("watchdog: {e}"))?;
        Ok(cluster)
    }

    /// Starts the (stopped) cluster and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let mut start = pg_command(&self.bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(self.root.join("data"))
            .arg("-l")
            .arg(self.root.join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
                self.port,
                self.root.display()
            ))
            .args(["-w", "start"]);
        run(start, "pg_ctl start")
    }

    /// Stops the cluster (fast shutdown: open connections are cut).
    pub fn stop(&self) -> Result<(), String> {
        self.shut_down("fast")
    }

    /// Kills the cluster as a crash would (immediate shutdown: no checkpoint, recovery on start).
    pub fn crash(&self) -> Result<(), String> {
        self.shut_down("immediate")
    }

    fn shut_down(&self, mode: &str) -> Result<(), String> {
        let mut stop = pg_command(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.root.join("data"))
            .args(["-m", mode, "-w", "stop"]);
        run(stop, &format!("pg_ctl stop -m {mode}"))
    }

    /// A URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

fn start_throwaway() -> Result<PgServer, String> {
    let cluster = Cluster::create()?;
    eprintln!(
        "tests: started a throwaway Postgres on 127.0.0.1:{} in {}",
        cluster.port,
        cluster.root.display()
    );
    Ok(PgServer {
        admin_url: cluster.url(),
    })
}

/// A fresh database, dropped when this value is dropped.
pub struct TestDb {
    /// URL of the fresh database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// Creates an empty database on the test server.
    pub async fn create() -> TestDb {
        let admin_url = tokio::task::spawn_blocking(|| server().admin_url.clone())
            .await
            .unwrap();
        let name = format!("mandate_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test Postgres: {e}"));
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        conn.close().await.ok();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        TestDb {
            url: url.to_string(),
            name,
            admin_url,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; use a thread with its own to finish the job.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin_url).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("tests: could not drop {}: {error}", self.name);
        }
    }
}
