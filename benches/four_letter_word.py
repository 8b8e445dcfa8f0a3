"""Sends a ZooKeeper four-letter word to HOST:PORT and prints the answer.

    python3 benches/four_letter_word.py 127.0.0.1:2181 [srvr]
"""
import socket
import sys

host, port = sys.argv[1].rsplit(":", 1)
word = sys.argv[2] if len(sys.argv) > 2 else "srvr"
s = socket.create_connection((host, int(port)), timeout=2)
s.sendall(word.encode())
out = b""
while True:
    d = s.recv(4096)
    if not d:
        break
    out += d
print(out.decode())
