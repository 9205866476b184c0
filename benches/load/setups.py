"""The systems under test: the upstream app, the nginx peers and the Palisade mesh.

Each `start_*` function launches its processes through the `Supervisor`, waits until they
answer, and returns a `Target` describing where the load generator should send requests
and which processes to measure. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from procs import SetupError, Supervisor, free_port, port_open, wait_until

SMALL_BODY = b"hello, mesh\n"
LARGE_BODY_SIZE = 16 * 1024
# Harmless query arguments so that every WAF has something to inspect on each request.
QUERY = "?user=alice&page=2"
MODSEC_MODULE = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"
CRS_SETUP = "/etc/modsecurity/crs/crs-setup.conf"
DEBIAN_MODSEC_CONF = "/etc/nginx/modsecurity.conf"
NAMESPACE = "bench"


@dataclass
class Target:
    """Where a scenario takes requests, and the proxy processes whose cost is measured."""

    name: str
    h1_url: str
    h2_url: str | None
    pids: list[int] = field(default_factory=list)
    host: str | None = None
    client_cert: tuple[Path, Path] | None = None
    ca_file: Path | None = None


# ---------------------------------------------------------------------------------------
# Certificates for the nginx mTLS hop (generated fresh per run; never reused).


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(work: Path) -> Pki:
    """An ECDSA P-256 CA, a server and a client certificate, as Palisade's SVIDs are."""
    d = work / "pki"
    d.mkdir()

    def run(*args: str) -> None:
        result = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
        if result.returncode != 0:
            raise SetupError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")

    run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    run("req", "-x509", "-new", "-key", "ca.key", "-days", "2", "-subj", "/CN=bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem")
    for name, eku, san in (
        ("server", "serverAuth", "DNS:server.bench,URI:spiffe://bench.local/ns/bench/sa/app"),
        ("client", "clientAuth", "URI:spiffe://bench.local/ns/bench/sa/loadgen"),
    ):
        run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key")
        run("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}", "-out", f"{name}.csr")
        (d / f"{name}.ext").write_text(
            f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={eku}\nsubjectAltName={san}\n"
        )
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")


# ---------------------------------------------------------------------------------------
# nginx instances. Each runs in the foreground (`daemon off`) so that the supervisor's
# process group holds the master and its workers.


def _nginx_conf(work: Path, name: str, workers: str, http_block: str, modules: str = "") -> Path:
    prefix = work / name
    # nginx creates the temp directories itself, owned by its unprivileged worker user.
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""{modules}
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {prefix}/tmp/client_body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{http_block}
}}
"""
    )
    return conf


def _start_nginx(sup: Supervisor, name: str, conf: Path, ports: list[int]) -> int:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    test = subprocess.run([nginx, "-t", "-q", "-e", "stderr", "-c", str(conf)],
                          capture_output=True, text=True)
    if test.returncode != 0:
        raise SetupError(f"nginx rejected the {name} configuration {conf}: {test.stderr.strip()}")
    child = sup.spawn(name, [nginx, "-e", "stderr", "-c", str(conf)])
    for port in ports:
        wait_until(f"{name} did not listen on 127.0.0.1:{port}",
                   lambda: (sup.check_alive(name, child), port_open(port))[1])
    return child.pid


def _give_to_nginx_workers(path: Path) -> None:
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


@dataclass
class App:
    h1_port: int
    h2c_port: int
    pid: int


def start_app(sup: Supervisor, work: Path) -> App:
    """The upstream application: one nginx worker serving two static files and a JSON API.

    One worker, static files and no logging keep the app's own cost small and identical
    for every scenario; only what sits in front of it changes.
    """
    www = work / "www"
    www.mkdir()
    (www / "small").write_bytes(SMALL_BODY)
    (www / "16k").write_bytes(bytes(ord("a") + i % 26 for i in range(LARGE_BODY_SIZE)))
    h1, h2c = free_port(), free_port()
    conf = _nginx_conf(work, "app", "1", f"""
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        listen 127.0.0.1:{h2c} http2 backlog=4096;
        # With sendfile, nginx writes an HTTP/2 response's HEADERS frame, then turns
        # TCP_NODELAY off and corks the socket for the DATA frame's sendfile: Nagle then
        # holds the DATA frame until the client acknowledges HEADERS, which a client
        # waiting for the rest of the response delays by ~40 ms (delayed ACK). Every
        # HTTP/2 request to the app took ~45 ms that way. Without sendfile both frames
        # leave at once, as they do over HTTP/1.1.
        sendfile off;
        root {www};
        location / {{ }}
        location /api/ {{
            default_type application/json;
            return 200 '{{"ok":true}}\\n';
        }}
    }}""")
    pid = _start_nginx(sup, "app", conf, [h1, h2c])
    return App(h1, h2c, pid)


def direct_target(app: App) -> Target:
    return Target("direct", f"http://127.0.0.1:{app.h1_port}", f"http://127.0.0.1:{app.h2c_port}",
                  pids=[app.pid])


def _upstream(name: str, port: int) -> str:
    return f"""
    upstream {name} {{
        server 127.0.0.1:{port};
        keepalive 128;
        keepalive_requests 1000000;
    }}"""


_PROXY_COMMON = """
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;"""


def _mtls_server(pki: Pki, port: int, app: App, extra: str) -> str:
    return f"""{_upstream("app", app.h1_port)}
    server {{
        listen 127.0.0.1:{port} ssl http2 backlog=4096;
        ssl_certificate {pki.server_cert};
        ssl_certificate_key {pki.server_key};
        ssl_client_certificate {pki.ca};
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.3;
        ssl_session_cache shared:bench:10m;
        {extra}
        location / {{
            proxy_pass http://app;{_PROXY_COMMON}
        }}
    }}"""


def start_nginx_chain(sup: Supervisor, work: Path, pki: Pki, app: App) -> Target:
    """Scenario 3: client -> nginx (outbound) -> mTLS -> nginx (inbound, verifies the
    client certificate) -> app. nginx speaks HTTP/1.1 to its upstreams, so the hop is
    HTTP/1.1 over TLS 1.3 with pooled keep-alive connections whatever the client speaks."""
    inner = free_port()
    inner_conf = _nginx_conf(work, "nginx-inbound", "auto", _mtls_server(pki, inner, app, ""))
    inner_pid = _start_nginx(sup, "nginx-inbound", inner_conf, [inner])
    h1, h2c = free_port(), free_port()
    outer_conf = _nginx_conf(work, "nginx-outbound", "auto", f"""{_upstream("hop", inner)}
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        listen 127.0.0.1:{h2c} http2 backlog=4096;
        location / {{
            proxy_pass https://hop;{_PROXY_COMMON}
            proxy_ssl_certificate {pki.client_cert};
            proxy_ssl_certificate_key {pki.client_key};
            proxy_ssl_trusted_certificate {pki.ca};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name server.bench;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_session_reuse on;
        }}
    }}""")
    outer_pid = _start_nginx(sup, "nginx-outbound", outer_conf, [h1, h2c])
    target = Target("nginx", f"http://127.0.0.1:{h1}", f"http://127.0.0.1:{h2c}",
                    pids=[outer_pid, inner_pid])
    _expect_200(target, "/small")
    return target


def start_modsecurity(sup: Supervisor, work: Path, pki: Pki, app: App) -> Target:
    """Scenario 4's peer: nginx terminating mTLS (like Palisade's inbound) with
    ModSecurity v3 and the OWASP CRS from Debian, blocking mode, paranoia level 1.

    Debian's modsecurity.conf is used as shipped except: the engine blocks instead of
    only detecting, response bodies are not inspected (Palisade inspects requests only),
    and the audit log goes to the run's directory.
    """
    for needed in (MODSEC_MODULE, CRS_SETUP, DEBIAN_MODSEC_CONF):
        if not Path(needed).exists():
            raise SetupError(f"{needed} is missing; install libnginx-mod-http-modsecurity and "
                             "modsecurity-crs (run.sh does)")
    d = work / "modsec"
    d.mkdir()
    base = Path(DEBIAN_MODSEC_CONF).read_text()
    base = base.replace("SecRuleEngine DetectionOnly", "SecRuleEngine On")
    base = base.replace("SecResponseBodyAccess On", "SecResponseBodyAccess Off")
    base = base.replace("SecAuditLog /var/log/modsec_audit.log", f"SecAuditLog {d}/audit.log")
    # nginx workers (user `nobody` when started as root) append to the audit log.
    (d / "audit.log").touch()
    _give_to_nginx_workers(d / "audit.log")
    base = base.replace("SecUnicodeMapFile unicode.mapping", "SecUnicodeMapFile /etc/nginx/unicode.mapping")
    (d / "modsecurity.conf").write_text(base)
    # Debian's owasp-crs.load uses IncludeOptional, which libmodsecurity3 cannot parse; the
    # same files are included here in the same order.
    crs = "\n".join(f"Include {f}" for f in (
        "/etc/modsecurity/crs/crs-setup.conf",
        "/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf",
        "/usr/share/modsecurity-crs/rules/*.conf",
        "/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf",
    ))
    (d / "main.conf").write_text(f"Include {d}/modsecurity.conf\n{crs}\n")
    port = free_port()
    conf = _nginx_conf(
        work, "nginx-modsecurity", "auto",
        _mtls_server(pki, port, app, f"modsecurity on;\n        modsecurity_rules_file {d}/main.conf;"),
        modules=f"load_module {MODSEC_MODULE};",
    )
    pid = _start_nginx(sup, "nginx-modsecurity", conf, [port])
    url = f"https://127.0.0.1:{port}"
    target = Target("nginx-modsecurity", url, url, pids=[pid],
                    client_cert=(pki.client_cert, pki.client_key), ca_file=pki.ca)
    _expect_200(target, "/small")
    return target


# ---------------------------------------------------------------------------------------
# Palisade: a control plane, a server-side proxy in front of the app (service `app`) and a
# client-side proxy whose outbound listener the load generator uses.


@dataclass
class Palisade:
    chain: Target
    inbound: Target


PALISADE_BINARIES = ("palisade-control-plane", "palisade-proxy", "palisadectl")


def palisade_binaries(bin_dir: Path) -> dict[str, Path]:
    """The three binaries, or a SetupError that says how to get them."""
    found = {name: bin_dir / name for name in PALISADE_BINARIES}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise SetupError(
            f"Palisade binaries not found: {', '.join(missing)}. Build them with "
            "`cargo build --release -p palisade-proxy -p palisade-control-plane` "
            "or pass --bin-dir DIR"
        )
    probe = subprocess.run([str(found["palisade-proxy"]), "--help"], capture_output=True, text=True)
    if probe.returncode != 0 or "--outbound" not in probe.stdout:
        raise SetupError(
            f"{found['palisade-proxy']} does not accept the documented CLI yet "
            f"(`--help` said: {(probe.stdout + probe.stderr).strip()[:200]})"
        )
    return found


def start_palisade(sup: Supervisor, work: Path, bin_dir: Path, app: App,
                   ready_timeout: float = 30.0) -> Palisade:
    """The mesh; `ready_timeout` bounds each wait for a process to be ready (longer when the
    binaries run under valgrind)."""
    bins = palisade_binaries(bin_dir)
    data = work / "control-plane"
    cp_port = free_port()
    cp_url = f"https://127.0.0.1:{cp_port}"
    cp = sup.spawn("control-plane", [str(bins["palisade-control-plane"]), "serve",
                                     "--data-dir", str(data), "--listen", f"127.0.0.1:{cp_port}"])
    bundle = data / "bundle.pem"
    wait_until("the control plane did not write bundle.pem and listen",
               lambda: (sup.check_alive("control-plane", cp), bundle.is_file() and port_open(cp_port))[1],
               ready_timeout)

    def token(service_account: str) -> str:
        result = subprocess.run(
            [str(bins["palisadectl"]), "--control-plane", cp_url, "--admin-dir", str(data / "admin"),
             "token", "create", "--namespace", NAMESPACE, "--service-account", service_account],
            capture_output=True, text=True, timeout=30)
        if result.returncode != 0 or not result.stdout.strip():
            raise SetupError(f"palisadectl token create failed: {result.stderr.strip()}")
        return result.stdout.strip()

    sides = {}
    for service in ("app", "loadgen"):
        ports = {k: free_port() for k in ("inbound", "outbound", "admin")}
        name = f"proxy-{service}"
        child = sup.spawn(name, [
            str(bins["palisade-proxy"]), "--control-plane", cp_url, "--trust-bundle", str(bundle),
            "--namespace", NAMESPACE, "--service-account", service, "--service", service,
            "--inbound", f"127.0.0.1:{ports['inbound']}", "--app", f"127.0.0.1:{app.h1_port}",
            "--outbound", f"127.0.0.1:{ports['outbound']}", "--admin", f"127.0.0.1:{ports['admin']}",
        ], env={"PALISADE_JOIN_TOKEN": token(service)})
        sides[service] = (name, child, ports)
    for name, child, ports in sides.values():
        wait_until(f"{name} never answered 200 on /ready (log: {sup.work / (name + '.log')})",
                   lambda: (sup.check_alive(name, child), _status(ports["admin"], "/ready") == 200)[1],
                   ready_timeout)
    server_name, server, server_ports = sides["app"]
    client_name, client, client_ports = sides["loadgen"]
    outbound = client_ports["outbound"]
    # The outbound proxy learns `app`'s endpoint from the control plane's watch; wait for it.
    wait_until("the outbound proxy never routed to service `app`",
               lambda: _status(outbound, "/small" + QUERY, host="app") == 200, ready_timeout)
    chain = Target("palisade", f"http://127.0.0.1:{outbound}", f"http://127.0.0.1:{outbound}",
                   pids=[client.pid, server.pid], host="app")
    cert, key = _client_svid(work, cp_url, bundle, token("loadclient"))
    inbound_url = f"https://127.0.0.1:{server_ports['inbound']}"
    inbound = Target("palisade-inbound", inbound_url, inbound_url, pids=[server.pid],
                     client_cert=(cert, key), ca_file=bundle)
    _expect_200(inbound, "/small")
    return Palisade(chain, inbound)


def _client_svid(work: Path, cp_url: str, bundle: Path, join_token: str) -> tuple[Path, Path]:
    """An X.509-SVID for the load generator itself, so that it can call the inbound proxy
    directly. The key is the benchmark client's, kept in the run's temporary directory."""
    d = work / "loadclient"
    d.mkdir()
    gen = subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(d / "key.pem"), "-subj", "/CN=loadclient", "-out", str(d / "csr.pem")],
        capture_output=True, text=True)
    if gen.returncode != 0:
        raise SetupError(f"openssl could not make the load client's CSR: {gen.stderr.strip()}")
    body = json.dumps({"csr_pem": (d / "csr.pem").read_text(), "join_token": join_token})
    ctx = ssl.create_default_context(cafile=str(bundle))
    ctx.check_hostname = False
    host, port = cp_url.removeprefix("https://").rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.request("POST", "/v1/svid", body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        payload = response.read()
    except OSError as error:
        raise SetupError(f"issuing the load client's SVID failed: {error}") from error
    finally:
        conn.close()
    if response.status != 200:
        raise SetupError(f"the control plane refused the load client's CSR: {response.status} "
                         f"{payload[:300]!r}")
    (d / "chain.pem").write_text(json.loads(payload)["chain_pem"])
    return d / "chain.pem", d / "key.pem"


# ---------------------------------------------------------------------------------------
# Plain request helpers for readiness checks and the WAF corpus.


def ssl_context(target: Target) -> ssl.SSLContext:
    """TLS client context presenting the target's client certificate. The server's chain
    is verified against the target's CA; its name is not (SVIDs carry only a URI SAN)."""
    ctx = ssl.create_default_context(cafile=str(target.ca_file))
    ctx.check_hostname = False
    if target.client_cert is not None:
        ctx.load_cert_chain(str(target.client_cert[0]), str(target.client_cert[1]))
    return ctx


def request(target: Target, method: str, path: str, headers: dict[str, str] | None = None,
            body: bytes | None = None, timeout: float = 10) -> int:
    """One request on a fresh connection; returns the status code."""
    scheme, rest = target.h1_url.split("://", 1)
    host, port = rest.rsplit(":", 1)
    if scheme == "https":
        conn = http.client.HTTPSConnection(host, int(port), context=ssl_context(target), timeout=timeout)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", target.host or "localhost")
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _status(port: int, path: str, host: str = "localhost") -> int | None:
    try:
        return request(Target("probe", f"http://127.0.0.1:{port}", None, host=host), "GET", path,
                       timeout=2)
    except (OSError, http.client.HTTPException):
        return None


def _expect_200(target: Target, path: str) -> None:
    try:
        status = request(target, "GET", path + QUERY)
    except (OSError, http.client.HTTPException) as error:
        raise SetupError(f"{target.name} did not answer a first request: {error}") from error
    if status != 200:
        raise SetupError(f"{target.name} answered {status} to GET {path}{QUERY}, expected 200")
