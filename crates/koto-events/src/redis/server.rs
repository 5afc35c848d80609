//! `RedisServer`: a private `redis-server` on a free loopback port with no persistence and its own
//! directory, for tests and benchmarks (never a shared or global database). It is killed on
//! drop. It does not install Redis: `scripts/test.sh` does.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::EventsError;

/// How long a fresh server may take to answer PING (a loaded 2-core CI machine included).
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Where `redis-server` is looked for: `$REDIS_SERVER_BIN`, then `/usr/bin/redis-server`, then
/// `PATH`.
pub fn redis_server_binary() -> Result<PathBuf, EventsError> {
    if let Some(explicit) = std::env::var_os("REDIS_SERVER_BIN") {
        return Ok(PathBuf::from(explicit));
    }
    let debian = PathBuf::from("/usr/bin/redis-server");
    if debian.exists() {
        return Ok(debian);
    }
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.exists())
    });
    in_path.ok_or_else(|| {
        EventsError::Tool(
            "redis-server not found (looked at $REDIS_SERVER_BIN, /usr/bin/redis-server and PATH): \
             run scripts/test.sh, which installs it"
                .to_owned(),
        )
    })
}

#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server with `--save '' --appendonly no` in a fresh directory under the system
    /// temp dir, on a free port of 127.0.0.1, and waits until it answers PING.
    pub fn start() -> Result<RedisServer, EventsError> {
        RedisServer::start_with(&[])
    }

    /// Like `start`, with extra `redis-server` arguments (e.g. `["--maxmemory", "1mb"]`).
    pub fn start_with(extra_args: &[&str]) -> Result<RedisServer, EventsError> {
        let binary = redis_server_binary()?;
        let mut last_error = None;
        // A port found free can be taken before Redis binds it: try a few.
        for _ in 0..5 {
            let port = free_port()?;
            let dir = std::env::temp_dir().join(format!(
                "koto-redis-{}-{port}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            std::fs::create_dir_all(&dir).map_err(|error| {
                EventsError::Tool(format!("cannot create {}: {error}", dir.display()))
            })?;
            let mut server = RedisServer {
                binary: binary.clone(),
                port,
                dir,
                extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error
            .unwrap_or_else(|| EventsError::Tool("redis-server did not start".to_owned())))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// SIGKILL, as a crash: no shutdown, no save. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) -> Result<(), EventsError> {
        self.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), EventsError> {
        let mut command = Command::new(&self.binary);
        command
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(&self.dir)
            .arg("--protected-mode")
            .arg("yes")
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().map_err(|error| {
            EventsError::Tool(format!(
                "cannot run {}: {error} (run scripts/test.sh to install redis-server)",
                self.binary.display()
            ))
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ping(self.port) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(EventsError::Tool(format!(
                    "redis-server exited at start ({status}) on port {}",
                    self.port
                )));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(EventsError::Tool(format!(
                    "redis-server did not answer PING within {READY_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, EventsError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|error| EventsError::Tool(format!("cannot find a free port: {error}")))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| EventsError::Tool(format!("cannot find a free port: {error}")))
}

fn ping(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0_u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
