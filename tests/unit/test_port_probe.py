"""The local stack's port probe: a listener blocks a port, the TIME_WAIT connections of a dead one do not."""

from __future__ import annotations

import socket

import pytest

from kafkatrail.stack.processes import StackError, ensure_port_free


def listener() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_port_with_a_listener_is_refused_with_the_flag_to_change() -> None:
    with listener() as server:
        port = server.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* --kafka-port"):
            ensure_port_free(port, "broker", "--kafka-port")


def test_connections_in_time_wait_of_a_dead_listener_do_not_block_its_port() -> None:
    server = listener()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()   # the server side closes first, so its end of the connection waits in TIME_WAIT
    client.recv(1)
    client.close()
    server.close()
    ensure_port_free(port, "broker", "--kafka-port")
