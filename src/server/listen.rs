//! Binding: one listening socket per worker on the same address with
//! `SO_REUSEPORT`, so that the kernel spreads new connections over the workers
//! and a connection never changes thread (one listener cloned into every worker
//! split the load unevenly and cost a wake-up per accept). Port 0 is resolved by
//! the first bind and reused for the others.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel may queue before `accept` (capped by
/// `net.core.somaxconn`): bursts of new connections wait instead of being refused.
const BACKLOG: i32 = 4096;

/// Binds `count` listeners to `addr`, all sharing one port.
pub fn bind_group(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut at = addr;
    for _ in 0..count.max(1) {
        let l = bind_one(at, count > 1)?;
        at = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

/// Binds one listener (with `SO_REUSEPORT` when it is part of a group).
pub fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    #[cfg(not(unix))]
    let _ = reuse_port;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_shares_one_port() {
        let group = bind_group("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        let ports: Vec<u16> = group
            .iter()
            .map(|l| l.local_addr().expect("addr").port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0));
        // A foreign bind to the same port without SO_REUSEPORT fails.
        let taken: SocketAddr = format!("127.0.0.1:{}", ports[0]).parse().expect("addr");
        assert!(bind_one(taken, false).is_err());
    }
}
