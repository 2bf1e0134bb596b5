//! Hosts with their own addresses on one machine, made of Linux network namespaces, so that a
//! test can cut one node off the network and heal it again (a real partition: packets to and
//! from it are lost, connections hang rather than being refused).
//!
//! ```text
//!  namespace <p>-sw: bridge br0 ── s1 ═ c1 (<p>-n1, 10.X.0.1) ── s2 ═ c2 (<p>-n2, 10.X.0.2) ...
//!                              └── sa ═ <p>a (this test's namespace, 10.X.0.254)
//!  this test's namespace: <p>h1 ═ m1 (<p>-n1, 10.X.1.2), <p>h2 ═ m2 (<p>-n2, 10.X.2.2) ...
//! ```
//!
//! Cluster traffic runs over the bridge ("the cluster network"); each node also has a link of
//! its own to the test ("the client network"), so a node cut off from the cluster network is
//! still reachable by MQTT clients, as a node on the wrong side of a partition would be.
//! Needs root (CAP_NET_ADMIN) and `ip` from iproute2; everything is removed on drop.

use std::net::IpAddr;
use std::process::Command;

#[derive(Debug)]
pub struct Net {
    prefix: String,
    subnet: u8,
    nodes: usize,
}

/// Runs `ip ARGS`; the error names the command.
fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Net {
    /// Creates `nodes` hosts. Panics with the failing command when namespaces cannot be made
    /// (not root, no iproute2): the partition tests cannot run without them.
    pub fn create(nodes: usize) -> Net {
        Net::try_create(nodes).unwrap_or_else(|error| {
            panic!(
                "cannot create network namespaces for the partition test (needs root and iproute2): {error}"
            )
        })
    }

    /// As `create`, the failing command as an error (for a test that can do without).
    pub fn try_create(nodes: usize) -> Result<Net, String> {
        remove_stale();
        let pid = std::process::id();
        let mut last_error = String::new();
        let used = Command::new("ip")
            .args(["-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // A second concurrent run (or anything else on the machine) may hold a subnet.
        for attempt in 0..8u32 {
            let subnet = 100 + ((pid + attempt * 17) % 150) as u8;
            if used.contains(&format!("inet 10.{subnet}.")) {
                last_error = format!("10.{subnet}.0.0/16 is in use");
                continue;
            }
            let net = Net {
                // The pid in every name: `remove_stale` recognises a dead run's leftovers.
                prefix: format!("b{pid}{}", char::from(b'a' + attempt as u8)),
                subnet,
                nodes,
            };
            match net.build() {
                Ok(()) => return Ok(net),
                Err(error) => {
                    last_error = error;
                    drop(net);
                }
            }
        }
        Err(last_error)
    }

    fn ns(&self, node: usize) -> String {
        format!("{}-n{node}", self.prefix)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn build(&self) -> Result<(), String> {
        let sw = self.switch();
        let s = self.subnet;
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        // The test's own port on the cluster network (status RPCs, joining).
        let admin = format!("{}a", self.prefix);
        ip(&[
            "link", "add", &admin, "type", "veth", "peer", "name", "sa", "netns", &sw,
        ])?;
        ip(&["-n", &sw, "link", "set", "sa", "master", "br0", "up"])?;
        ip(&["addr", "add", &format!("10.{s}.0.254/24"), "dev", &admin])?;
        ip(&["link", "set", &admin, "up"])?;
        for node in 1..=self.nodes {
            let ns = self.ns(node);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let port = format!("s{node}");
            let nic = format!("c{node}");
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", &nic, "netns", &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.{s}.0.{node}/24"),
                "dev",
                &nic,
            ])?;
            ip(&["-n", &ns, "link", "set", &nic, "up"])?;
            let host = format!("{}h{node}", self.prefix);
            let mnic = format!("m{node}");
            ip(&[
                "link", "add", &host, "type", "veth", "peer", "name", &mnic, "netns", &ns,
            ])?;
            ip(&["addr", "add", &format!("10.{s}.{node}.1/24"), "dev", &host])?;
            ip(&["link", "set", &host, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.{s}.{node}.2/24"),
                "dev",
                &mnic,
            ])?;
            ip(&["-n", &ns, "link", "set", &mnic, "up"])?;
        }
        Ok(())
    }

    /// The command prefix that runs a program on `node`.
    pub fn wrapper(&self, node: usize) -> Vec<String> {
        ["ip", "netns", "exec"]
            .iter()
            .map(|s| (*s).to_string())
            .chain([self.ns(node)])
            .collect()
    }

    /// `node`'s address on the cluster network.
    pub fn cluster_ip(&self, node: usize) -> IpAddr {
        IpAddr::from([10, self.subnet, 0, node as u8])
    }

    /// `node`'s address on its client network (reachable from the test).
    pub fn client_ip(&self, node: usize) -> IpAddr {
        IpAddr::from([10, self.subnet, node as u8, 2])
    }

    /// Cuts `node` off the cluster network: nothing reaches it or leaves it there.
    pub fn cut(&self, node: usize) {
        self.set_switch_port(node, "down");
    }

    /// Reconnects `node` to the cluster network.
    pub fn heal(&self, node: usize) {
        self.set_switch_port(node, "up");
    }

    fn set_switch_port(&self, node: usize, state: &str) {
        let port = format!("s{node}");
        ip(&["-n", &self.switch(), "link", "set", &port, state]).expect("set the switch port");
    }
}

/// Namespaces left by a run that was killed before it could remove them (its pid is gone).
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix('b') else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let ours = rest[digits.len()..].len() > 1
            && (name.ends_with("-sw") || name.contains("-n"))
            && !digits.is_empty();
        if ours && !std::path::Path::new(&format!("/proc/{digits}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pairs with an end in it.
        for node in 1..=self.nodes {
            let _ = ip(&["netns", "del", &self.ns(node)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}
