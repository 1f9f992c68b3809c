//! A throw-away sshd on 127.0.0.1 for the ssh recipe: a host key and a user key made for the test in a temporary
//! directory, root login with that key only, on a port the kernel picked. Every session's environment gets the
//! built pynish first on PATH (as an installed pynish would be) and the recipe sandbox's marker, so that the
//! processes a remote job starts are counted with the recipe's. Dropping the guard ends the sshd and its
//! sessions, also when a test fails.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd gets to listen; it takes a few milliseconds on an idle machine.
const START_PATIENCE: Duration = Duration::from_secs(20);

pub struct Sshd {
    child: Child,
    /// An ssh client configuration naming the server `node1` and `node2` (`ssh -F THIS node1`).
    pub client_config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts the sshd; `marker` is the recipe sandbox's marker value.
    pub fn start(marker: &str) -> Sshd {
        super::require(SSHD, "openssh-server");
        super::require("ssh", "openssh-client");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path();
        for key in ["host_key", "user_key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "pynish-test", "-f"])
                .arg(path.join(key))
                .status()
                .expect("ssh-keygen runs");
            assert!(status.success(), "ssh-keygen failed");
        }
        std::fs::copy(path.join("user_key.pub"), path.join("authorized_keys")).expect("authorized_keys");
        // sshd refuses to start without its privilege separation directory (made by the service, not the package).
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd (sshd's privilege separation directory)");
        let pynish_dir = Path::new(env!("CARGO_BIN_EXE_pynish")).parent().expect("pynish's directory");
        let marker_var = super::MARKER;

        // A port that was free a moment ago; if another process takes it first, sshd exits and we try again.
        for _attempt in 0..5 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|l| l.local_addr()).expect("a port").port();
            let server_config = path.join("sshd_config");
            std::fs::write(
                &server_config,
                format!(
                    "ListenAddress 127.0.0.1:{port}\n\
                     HostKey {dir}/host_key\n\
                     AuthorizedKeysFile {dir}/authorized_keys\n\
                     PermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     PidFile none\n\
                     SetEnv PATH={pynish}:/usr/local/bin:/usr/bin:/bin {marker_var}={marker}\n",
                    dir = path.display(),
                    pynish = pynish_dir.display(),
                ),
            )
            .expect("sshd_config");
            let client_config = path.join("ssh_config");
            std::fs::write(
                &client_config,
                format!(
                    "Host node1 node2\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {dir}/user_key\n  \
                     IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  \
                     LogLevel ERROR\n",
                    dir = path.display()
                ),
            )
            .expect("ssh_config");
            let log = std::fs::File::create(path.join("sshd.log")).expect("sshd.log");
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(&server_config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            let start = Instant::now();
            while start.elapsed() < START_PATIENCE && child.try_wait().expect("try_wait").is_none() {
                if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                    return Sshd { child, client_config, _dir: dir };
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(path.join("sshd.log")).unwrap_or_default();
            eprintln!("sshd on port {port} did not come up: {log}");
        }
        panic!("sshd did not start on 127.0.0.1 (see its log above)");
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Each connection has an sshd of its own (a child of the listener, in a session of its own): end those
        // too, then the listener.
        let listener = self.child.id() as i32;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1));
            if ppid.and_then(|p| p.parse::<i32>().ok()) == Some(listener) {
                // SAFETY: kill takes plain integers; pid is a child of this test's sshd.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
