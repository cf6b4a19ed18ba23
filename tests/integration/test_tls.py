"""TLS termination: a CA, an intermediate and server certificates made here
with the openssl CLI, and real clients — curl, Python's ssl module and
openssl s_client — against the real server: keep-alive and pipelining,
SNI and ALPN, session resumption across workers, refused old protocols,
the chain and the OCSP staple, certificates swapped by a reload under
load, a key only root can read, plaintext and TLS on the wrong port, a
slow handshake, and the config errors."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import TWISTER, Server, wait_for

HAVE_TOOLS = shutil.which("openssl") and shutil.which("curl")


def sh(*args, cwd=None, input=None):
    p = subprocess.run(list(args), cwd=cwd, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    if p.returncode != 0:
        raise AssertionError("%s failed:\n%s" % (" ".join(args), p.stdout.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


class Pki:
    """Root CA -> intermediate CA -> leaf certificates, in a directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="twister-pki-")
        self.serial = 1000
        self._ca("root", None)
        self._ca("inter", "root")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _ca(self, name, issuer):
        key = self.path(name + ".key")
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", key)
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
        if issuer is None:
            sh("openssl", "req", "-x509", "-new", "-key", key, "-subj", "/CN=Twister Test Root",
               "-days", "30", "-out", self.path(name + ".pem"), "-addext",
               "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        else:
            self._sign(name, "/CN=Twister Test Intermediate", key, issuer, ext)

    def _sign(self, name, subject, key, issuer, ext, days=10):
        csr = self.path(name + ".csr")
        sh("openssl", "req", "-new", "-key", key, "-subj", subject, "-out", csr)
        self.serial += 1
        args = ["openssl", "x509", "-req", "-in", csr, "-CA", self.path(issuer + ".pem"),
                "-CAkey", self.path(issuer + ".key"), "-set_serial", str(self.serial),
                "-extfile", ext, "-out", self.path(name + ".pem"), "-days", str(days)]
        sh(*args)
        return self.serial

    def leaf(self, name, names, kind="ec", expired=False):
        """Makes name.key and name.pem (leaf) and name.chain.pem (leaf +
        intermediate); returns the serial."""
        key = self.path(name + ".key")
        if kind == "ec":
            sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-out", key)
        else:
            sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
               "-out", key)
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=" + ",".join("DNS:" + n for n in names) + "\n")
            f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
            f.write("authorityInfoAccess=OCSP;URI:http://127.0.0.1:9/\n")
        if expired:
            csr = self.path(name + ".csr")
            sh("openssl", "req", "-new", "-key", key, "-subj", "/CN=" + names[0], "-out", csr)
            self.serial += 1
            # x509 -req cannot backdate; `openssl ca` can.
            conf = self.path("ca.cnf")
            db = self.path("index.txt")
            open(db, "a").close()
            with open(conf, "w") as f:
                f.write("[ca]\ndefault_ca=d\n[d]\ndatabase=%s\nnew_certs_dir=%s\n"
                        "serial=%s/serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
                        % (db, self.dir, self.dir))
            with open(self.path("serial"), "w") as f:
                f.write("%04X\n" % self.serial)
            sh("openssl", "ca", "-batch", "-config", conf, "-cert", self.path("inter.pem"),
               "-keyfile", self.path("inter.key"), "-in", csr, "-out", self.path(name + ".pem"),
               "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", ext,
               "-notext")
            serial = self.serial
        else:
            serial = self._sign(name, "/CN=" + names[0], key, "inter", ext)
        with open(self.path(name + ".chain.pem"), "w") as out:
            for part in (name + ".pem", "inter.pem"):
                with open(self.path(part)) as f:
                    out.write(f.read())
        return serial

    def ocsp_response(self, name):
        """A 'good' DER OCSP response for name.pem, signed by its issuer."""
        db = self.path("ocsp-index.txt")
        serial = sh("openssl", "x509", "-in", self.path(name + ".pem"), "-noout",
                    "-serial").strip().split("=")[1]
        subject = sh("openssl", "x509", "-in", self.path(name + ".pem"), "-noout", "-subject",
                     "-nameopt", "compat").strip().split("=", 1)[1]
        with open(db, "w") as f:
            f.write("V\t300101000000Z\t\t%s\tunknown\t%s\n" % (serial, subject.strip()))
        req = self.path(name + ".ocsp.req")
        sh("openssl", "ocsp", "-issuer", self.path("inter.pem"), "-cert", self.path(name + ".pem"),
           "-reqout", req, "-no_nonce")
        resp = self.path(name + ".ocsp.der")
        sh("openssl", "ocsp", "-index", db, "-rsigner", self.path("inter.pem"), "-rkey",
           self.path("inter.key"), "-CA", self.path("inter.pem"), "-reqin", req, "-respout", resp,
           "-ndays", "1")
        return resp

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def client_ctx(pki, **kw):
    ctx = ssl.create_default_context(cafile=pki.path("root.pem"))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_connect(port, ctx, name="a.test", session=None, timeout=10):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname=name, session=session)


def read_response(sock):
    """One HTTP/1.1 response with Content-Length: (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed in the head: %r" % data)
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed in the body")
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def get(sock, path="/", host="a.test"):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
    status, headers, body, extra = read_response(sock)
    assert extra == b"", extra
    return status, headers, body


def peer_serial(sock):
    der = sock.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         stdout=subprocess.PIPE, check=True).stdout.decode()
    return int(out.strip().split("=")[1], 16)


def sanitizer_build():
    """True for the ASan build, whose allocator's redzones and quarantine
    make a memory figure meaningless."""
    out = subprocess.run(["nm", "-D", TWISTER], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL).stdout
    return b"__asan_init" in out


def worker_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


CONFIG = """
modules: [hello, static, redirect, access_log]
access_log: {{ path: {{dir}}/access.log, format: json, flush_interval: 0 }}
timeouts: {{ header: 2s }}
servers:
  - listen: ["127.0.0.1:{{port}} tls", "127.0.0.1:{{port2}}"]
    server_names: [a.test, localhost]
    tls:
      certificate: [{pki}/a.chain.pem, {pki}/a-rsa.chain.pem]
      key: [{pki}/a.key, {pki}/a-rsa.key]
      ocsp_stapling: on
      ocsp_response: {pki}/a.ocsp.der
    routes:
      - {{ path: /scheme, handler: redirect, redirect: {{ return: "301 $scheme://$host/x" }} }}
      - {{ prefix: /files/, handler: static, static: {{ root: {{dir}}/www }} }}
      - {{ prefix: /, handler: hello }}
  - listen: ["127.0.0.1:{{port}} tls"]
    server_names: [b.test]
    # Its own session_tickets are not what decides (the listener's default
    # server's do), but its handshakes must still find the ticket keys.
    tls: {{ certificate: {pki}/b.chain.pem, key: {pki}/b.key, session_tickets: off }}
    routes:
      - {{ prefix: /, handler: hello, hello: {{ message: "I am b" }} }}
  - listen: ["127.0.0.1:{{port}} tls"]
    server_names: [c.test]
    routes:
      - {{ prefix: /, handler: hello, hello: {{ message: "I am c" }} }}
"""


@unittest.skipUnless(HAVE_TOOLS, "needs the openssl and curl commands")
class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.serial_a = cls.pki.leaf("a", ["a.test", "localhost"])
        cls.serial_a_rsa = cls.pki.leaf("a-rsa", ["a.test", "localhost"], kind="rsa")
        cls.serial_b = cls.pki.leaf("b", ["b.test"])
        cls.pki.ocsp_response("a")
        www = os.urandom(1 << 20)
        cls.file_sha = hashlib.sha256(www).hexdigest()
        cls.server = Server(CONFIG.format(pki=cls.pki.dir), workers=2,
                            extra_files={"www/files/big.bin": www})
        cls.server.start()
        cls.port, cls.port2 = cls.server.port, cls.server.port2
        cls.ctx = client_ctx(cls.pki)

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        cls.pki.cleanup()

    def curl(self, *args):
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", self.pki.path("root.pem"),
                            "--resolve", "a.test:%d:127.0.0.1" % self.port] + list(args),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def test_curl_keep_alive(self):
        url = "https://a.test:%d/" % self.port
        rc, out, err = self.curl("-w", " %{http_code} %{num_connects}\n", url, url, url)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("Hello, World! 200"), 3, out)
        # One handshake for three requests: keep-alive over TLS.
        self.assertEqual([l.split()[-1] for l in out.strip().splitlines()], ["1", "0", "0"])

    def test_pipelined_requests(self):
        with tls_connect(self.port, self.ctx) as s:
            s.sendall(b"GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n" * 5)
            data = b""
            deadline = time.monotonic() + 10
            while data.count(b"Hello, World!") < 5 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.assertEqual(data.count(b"HTTP/1.1 200 OK"), 5, data)

    def test_curl_pipelining_over_http11(self):
        # curl's --http1.1 with several URLs reuses one connection.
        url = "https://a.test:%d/files/big.bin" % self.port
        rc, out, err = self.curl("--http1.1", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code}\n", url, url)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split(), ["200", "200"])

    def test_sni_picks_server_and_certificate(self):
        with tls_connect(self.port, self.ctx, "b.test") as s:
            self.assertEqual(peer_serial(s), self.serial_b)
            self.assertEqual(get(s, host="b.test")[2], b"I am b")
        ctx = client_ctx(self.pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        with tls_connect(self.port, ctx, "b.test") as s:
            self.assertEqual(peer_serial(s), self.serial_b)
            self.assertEqual(get(s, host="b.test")[2], b"I am b")
        with tls_connect(self.port, self.ctx, "a.test") as s:
            self.assertIn(peer_serial(s), (self.serial_a, self.serial_a_rsa))
            self.assertEqual(get(s)[2], b"Hello, World!")

    def test_unknown_name_gets_default_certificate(self):
        ctx = client_ctx(self.pki, check_hostname=False)
        with tls_connect(self.port, ctx, "nobody.test") as s:
            self.assertIn(peer_serial(s), (self.serial_a, self.serial_a_rsa))
        # A server without tls: is reached with the default certificate.
        with tls_connect(self.port, ctx, "c.test") as s:
            self.assertIn(peer_serial(s), (self.serial_a, self.serial_a_rsa))
            self.assertEqual(get(s, host="c.test")[2], b"I am c")

    def test_rsa_and_ecdsa_chosen_by_client(self):
        for sigalgs, serial in (("ECDSA+SHA256", self.serial_a), ("RSA-PSS+SHA256:RSA+SHA256",
                                                                  self.serial_a_rsa)):
            out = subprocess.run(
                ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.port, "-servername",
                 "a.test", "-tls1_2", "-sigalgs", sigalgs, "-showcerts"],
                input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20).stdout
            pem = re.search(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", out, re.S)
            self.assertIsNotNone(pem, out)
            got = sh("openssl", "x509", "-noout", "-serial", input=pem.group(0))
            self.assertEqual(int(got.strip().split("=")[1], 16), serial, sigalgs)

    def test_alpn_http11_only(self):
        ctx = client_ctx(self.pki)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with tls_connect(self.port, ctx) as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
        ctx = client_ctx(self.pki)
        ctx.set_alpn_protocols(["h2"])
        with tls_connect(self.port, ctx) as s:
            self.assertIsNone(s.selected_alpn_protocol())
            self.assertEqual(get(s)[0], 200)

    def test_session_resumption_across_workers(self):
        for version in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            ctx = client_ctx(self.pki, maximum_version=version)
            with tls_connect(self.port, ctx) as s:
                get(s)
                session = s.session
            reused = []
            for _ in range(12):  # two workers: both see these tickets
                with tls_connect(self.port, ctx, session=session) as s:
                    get(s)
                    reused.append(s.session_reused)
            self.assertTrue(all(reused), (version, reused))

    def test_old_protocols_refused(self):
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would offer them
            ctx.minimum_version = version
            ctx.maximum_version = version
            with self.assertRaises(ssl.SSLError, msg=str(version)):
                with tls_connect(self.port, ctx):
                    pass
        ctx = client_ctx(self.pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        with tls_connect(self.port, ctx) as s:
            self.assertEqual(s.version(), "TLSv1.2")

    def test_s_client_chain_and_ocsp_staple(self):
        out = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.port, "-servername", "a.test",
             "-CAfile", self.pki.path("root.pem"), "-verify_return_error", "-showcerts",
             "-status", "-sigalgs", "ECDSA+SHA256"],
            input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20).stdout.decode()
        chain = out.split("Certificate chain", 1)[1].split("\n---\n", 1)[0]
        self.assertEqual(chain.count("-----BEGIN CERTIFICATE-----"), 2, out)  # leaf + intermediate
        self.assertIn("Verify return code: 0 (ok)", out)
        self.assertIn("OCSP Response Status: successful", out)
        self.assertIn("Cert Status: good", out)

    def test_sendfile_over_tls(self):
        with tls_connect(self.port, self.ctx) as s:
            for _ in range(2):
                status, headers, body = get(s, "/files/big.bin")
                self.assertEqual(status, 200)
                self.assertEqual(hashlib.sha256(body).hexdigest(), self.file_sha)

    def test_scheme_and_access_log(self):
        with tls_connect(self.port, self.ctx) as s:
            status, headers, _ = get(s, "/scheme")
            self.assertEqual(status, 301)
            self.assertEqual(headers["location"], "https://a.test/x")
        with socket.create_connection(("127.0.0.1", self.port2), timeout=10) as s:
            status, headers, _ = get(s, "/scheme")
            self.assertEqual(headers["location"], "http://a.test/x")

        def entries():
            try:
                with open(os.path.join(self.server.dir, "access.log")) as f:
                    return [json.loads(l) for l in f if '/scheme' in l]
            except FileNotFoundError:
                return []
        got = wait_for(lambda: len(entries()) >= 2 and entries(), what="access log lines")
        tls = [e for e in got if e["scheme"] == "https"]
        plain = [e for e in got if e["scheme"] == "http"]
        self.assertTrue(tls and plain, got)
        self.assertIn(tls[-1]["tls_protocol"], ("TLSv1.3", "TLSv1.2"))
        self.assertTrue(tls[-1]["tls_cipher"])
        self.assertNotIn("tls_protocol", plain[-1])

    def test_plaintext_on_tls_port(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)
            self.assertIn(b"HTTPS", data)

    def test_tls_on_plaintext_port(self):
        ctx = client_ctx(self.pki)
        raw = socket.create_connection(("127.0.0.1", self.port2), timeout=10)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw, server_hostname="a.test")
        raw.close()
        # And what the server said: a 400, then the close.
        hello = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % self.port2,
                                "-servername", "a.test", "-msg"], input=b"",
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        self.assertNotEqual(hello.returncode, 0)
        with socket.create_connection(("127.0.0.1", self.port2), timeout=10) as s:
            # The first bytes of a ClientHello record, then silence: 400, never a hang.
            s.sendall(bytes.fromhex("160301020001"))
            data = s.recv(4096)
            self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data)

    def test_slow_handshake_dropped_by_header_timeout(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=15) as s:
            s.sendall(bytes.fromhex("16030100"))  # a ClientHello that never completes
            start = time.monotonic()
            self.assertEqual(s.recv(4096), b"")  # closed by the server (2 s header timeout)
            self.assertLess(time.monotonic() - start, 14)  # bound on waiting, not a timing check

    @unittest.skipIf(sanitizer_build(), "memory is measured in the plain build")
    def test_idle_tls_connection_memory(self):
        pids = self.server.worker_pids()
        count = 200
        ctx = client_ctx(self.pki)
        socks = []
        try:
            for s in [tls_connect(self.port, ctx) for _ in range(20)]:
                get(s)
                socks.append(s)
            time.sleep(0.3)
            before = sum(worker_rss_kib(p) for p in pids)
            for _ in range(count):
                s = tls_connect(self.port, ctx)
                get(s)
                socks.append(s)
            time.sleep(0.3)
            after = sum(worker_rss_kib(p) for p in pids)
        finally:
            for s in socks:
                s.close()
        per_conn = (after - before) * 1024 / count
        print("\nmemory per idle TLS keep-alive connection: %.0f bytes (RSS)" % per_conn)
        # Without SSL_MODE_RELEASE_BUFFERS OpenSSL keeps ~34 KiB of record
        # buffers per connection; released, it is a fraction of that.
        self.assertLess(per_conn, 24 * 1024)


@unittest.skipUnless(HAVE_TOOLS, "needs the openssl and curl commands")
class TlsConfigTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = Pki()
        cls.pki.leaf("a", ["a.test"])
        cls.pki.leaf("b", ["a.test"])
        cls.pki.leaf("old", ["a.test"], expired=True)

    @classmethod
    def tearDownClass(cls):
        cls.pki.cleanup()

    def check(self, tls, expect_rc, *patterns, listen="127.0.0.1:{port} tls"):
        config = """
modules: [hello]
servers:
  - listen: ["%s"]
    tls: %s
    routes: [ { prefix: /, handler: hello } ]
""" % (listen, tls.replace("PKI", self.pki.dir))
        srv = Server(config)
        try:
            rc, out = srv.run("-t")
        finally:
            shutil.rmtree(srv.dir, ignore_errors=True)
        self.assertEqual(rc != 0, expect_rc != 0, out)
        for p in patterns:
            self.assertRegex(out, p)
        return out

    def test_missing_certificate_file(self):
        self.check("{ certificate: PKI/none.pem, key: PKI/a.key }", 1,
                   r"twister\.yaml:\d+:\d+: .*certificate.*cannot open certificate .*none\.pem")

    def test_key_does_not_match(self):
        self.check("{ certificate: PKI/a.pem, key: PKI/b.key }", 1,
                   r"twister\.yaml:\d+:\d+: .*key.*does not match the certificate")

    def test_unknown_protocol(self):
        self.check("{ certificate: PKI/a.pem, key: PKI/a.key, protocols: [TLSv1.2, TLSv9] }", 1,
                   r"twister\.yaml:\d+:\d+: .*protocols\[1\]: unknown protocol 'TLSv9'")
        self.check("{ certificate: PKI/a.pem, key: PKI/a.key, protocols: [TLSv1.1] }", 1,
                   r"insecure")

    def test_bad_ciphers(self):
        self.check("{ certificate: PKI/a.pem, key: PKI/a.key, ciphers: NOPE-CIPHER }", 1,
                   r"twister\.yaml:\d+:\d+: .*ciphers: no usable cipher")

    def test_expired_certificate_is_a_warning(self):
        out = self.check("{ certificate: PKI/old.pem, key: PKI/old.key }", 0,
                         r"twister\.yaml:\d+:\d+: .*tls\.certificate: the certificate .*old\.pem has expired")
        self.assertIn("configuration OK", out)

    def test_tls_block_without_tls_listener(self):
        self.check("{ certificate: PKI/a.pem, key: PKI/a.key }", 1,
                   r"none of this server's listen addresses has the 'tls' flag",
                   listen="127.0.0.1:{port}")

    def test_tls_listener_without_certificate(self):
        config = """
modules: [hello]
servers:
  - listen: ["127.0.0.1:{port} tls"]
    routes: [ { prefix: /, handler: hello } ]
"""
        srv = Server(config)
        try:
            rc, out = srv.run("-t")
        finally:
            shutil.rmtree(srv.dir, ignore_errors=True)
        self.assertNotEqual(rc, 0)
        self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*has the 'tls' flag but its first server")


RELOAD_CONFIG = """
modules: [hello]
{user}
servers:
  - listen: ["127.0.0.1:{{port}} tls"]
    server_names: [a.test]
    tls: {{ certificate: {dir}/live.pem, key: {dir}/live.key }}
    routes: [ {{ prefix: /, handler: hello }} ]
"""


class TlsLoad:
    """Keep-alive TLS clients sending requests back to back until stopped.
    A response with Connection: close (a draining worker saying goodbye)
    makes the client reconnect; anything else that goes wrong is a
    failure. Records the serial seen on every new handshake, and when."""

    def __init__(self, port, ctx, connections=4):
        self.port, self.ctx = port, ctx
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = []
        self.serials = []
        self.threads = [threading.Thread(target=self.run) for _ in range(connections)]

    def run(self):
        sock = None
        while not self.stop.is_set():
            try:
                if sock is None:
                    sock = tls_connect(self.port, self.ctx)
                    with self.lock:
                        self.serials.append((time.monotonic(), peer_serial(sock)))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
                status, headers, body, _ = read_response(sock)
                if status != 200:
                    raise AssertionError("status %d" % status)
                with self.lock:
                    self.ok += 1
                if headers.get("connection", "").lower() == "close":
                    sock.close()
                    sock = None
            except (AssertionError, OSError, ssl.SSLError) as e:
                with self.lock:
                    self.errors.append(repr(e))
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


@unittest.skipUnless(HAVE_TOOLS, "needs the openssl and curl commands")
class TlsReloadTest(unittest.TestCase):
    def setUp(self):
        self.pki = Pki()
        self.serial1 = self.pki.leaf("one", ["a.test"])
        self.serial2 = self.pki.leaf("two", ["a.test"])
        self.ctx = client_ctx(self.pki)

    def tearDown(self):
        self.pki.cleanup()

    def install(self, srv, name, mode=0o600):
        for ext in ("pem", "key"):
            dst = os.path.join(srv.dir, "live." + ext)
            src = self.pki.path(name + (".chain.pem" if ext == "pem" else ".key"))
            shutil.copyfile(src, dst + ".tmp")
            os.chmod(dst + ".tmp", mode)
            os.replace(dst + ".tmp", dst)  # the way certbot swaps its links

    def make_server(self, user=""):
        srv = Server("")
        srv.write_config(RELOAD_CONFIG.format(dir=srv.dir, user=user))
        self.install(srv, "one")
        return srv

    def reload(self, srv):
        rc, out = srv.run("-s", "reload", timeout=60)
        return rc, out

    def test_reload_swaps_certificate_under_load(self):
        with self.make_server() as srv:
            with tls_connect(srv.port, self.ctx) as s:
                self.assertEqual(peer_serial(s), self.serial1)
            with TlsLoad(srv.port, self.ctx) as load:
                wait_for(lambda: load.ok > 50, what="load")
                # An open connection keeps its session across the reload.
                kept = tls_connect(srv.port, self.ctx)
                get(kept)
                self.install(srv, "two")
                rc, out = self.reload(srv)
                self.assertEqual(rc, 0, out)
                self.assertIn("reload OK", out)
                after_ok = time.monotonic()
                with tls_connect(srv.port, self.ctx) as s:
                    self.assertEqual(peer_serial(s), self.serial2)
                self.assertEqual(get(kept)[0], 200)
                self.assertEqual(peer_serial(kept), self.serial1)
                kept.close()
                wait_for(lambda: any(t > after_ok for t, _ in load.serials), what="new handshakes")
                ok_at_reload = load.ok
                wait_for(lambda: load.ok > ok_at_reload + 50, what="load after reload")
            self.assertEqual(load.errors, [], "failed requests during the reload")
            late = [s for t, s in load.serials if t > after_ok]
            self.assertTrue(late and all(s == self.serial2 for s in late), load.serials)

    def test_bad_certificate_on_reload_keeps_old(self):
        with self.make_server() as srv:
            with open(os.path.join(srv.dir, "live.key"), "w") as f:
                f.write("not a key\n")
            rc, out = self.reload(srv)
            self.assertNotEqual(rc, 0, out)
            self.assertRegex(out, r"twister\.yaml:\d+:\d+: .*key")
            with tls_connect(srv.port, self.ctx) as s:
                self.assertEqual(peer_serial(s), self.serial1)
                self.assertEqual(get(s)[0], 200)

    def test_session_resumes_across_reload(self):
        with self.make_server() as srv:
            with tls_connect(srv.port, self.ctx) as s:
                get(s)
                session = s.session
            rc, out = self.reload(srv)
            self.assertEqual(rc, 0, out)
            with tls_connect(srv.port, self.ctx, session=session) as s:
                get(s)
                self.assertTrue(s.session_reused)

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run workers as another user")
    def test_key_unreadable_by_worker_user(self):
        with self.make_server(user="user: nobody") as srv:
            key = os.path.join(srv.dir, "live.key")
            self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
            self.assertEqual(os.stat(key).st_uid, 0)
            for pid in srv.worker_pids():
                with open("/proc/%d/status" % pid) as f:
                    uid = [l for l in f if l.startswith("Uid:")][0].split()[1]
                self.assertNotEqual(uid, "0")
            with tls_connect(srv.port, self.ctx) as s:
                self.assertEqual(get(s)[0], 200)
            # A reload reads the new key as root again.
            self.install(srv, "two")
            rc, out = self.reload(srv)
            self.assertEqual(rc, 0, out)
            with tls_connect(srv.port, self.ctx) as s:
                self.assertEqual(peer_serial(s), self.serial2)


if __name__ == "__main__":
    unittest.main()
