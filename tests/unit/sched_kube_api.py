#!/usr/bin/python3
"""A local HTTPS endpoint speaking the Kubernetes API shapes that the
scheduler's kubernetes actuator uses (test_kube_actuator). A real API
server cannot run on the test machine; this one answers the same
requests with the same objects:
  GET/PATCH /apis/apps/v1/namespaces/{ns}/statefulsets/{name}/scale
  -> autoscaling/v1 Scale, or a metav1 Status on failure.
status.replicas lags spec.replicas by one step per GET, as a StatefulSet
controller creating pods would. Every request is appended to --log as one
JSON line (method, path, auth, content_type, body).
usage: sched_kube_api.py --cert C --key K --port P --token-file T --log L"""
import argparse
import http.server
import json
import re
import ssl

NS = "shardq"
SETS = {"workers": {"spec": 1, "status": 1}, "weird": {"spec": 1, "status": 1}}
PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/statefulsets/([^/]+)/scale$")


def status(code, reason, message, name=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}
    if name:
        body["details"] = {"name": name, "group": "apps", "kind": "statefulsets"}
    return code, body


def scale(name):
    s = SETS[name]
    spec = {"replicas": s["spec"]} if s["spec"] else {}  # omitempty, as the API does
    return 200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                 "metadata": {"name": name, "namespace": NS, "uid": "6f1c-" + name,
                              "resourceVersion": "4242",
                              "creationTimestamp": "2026-11-29T10:00:00Z"},
                 "spec": spec,
                 "status": {"replicas": s["status"],
                            "selector": "app.kubernetes.io/name=shardq,app.kubernetes.io/component=worker"}}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        with open(self.server.log, "a") as f:
            f.write(json.dumps({"method": method, "path": self.path,
                                "auth": self.headers.get("Authorization"),
                                "content_type": self.headers.get("Content-Type"),
                                "body": body}) + "\n")
        token = open(self.server.token_file).read().strip()
        if self.headers.get("Authorization") != "Bearer " + token:
            return status(401, "Unauthorized", "Unauthorized")
        m = PATH.match(self.path)
        if not m:
            return status(404, "NotFound", "the server could not find the requested resource")
        ns, name = m.groups()
        if name == "forbidden":
            return status(403, "Forbidden",
                          f'statefulsets.apps "{name}" is forbidden: User '
                          f'"system:serviceaccount:{ns}:shardq-scheduler" cannot {method.lower()} '
                          f'resource "statefulsets/scale" in API group "apps" in the namespace "{ns}"',
                          name)
        if ns != NS or name not in SETS:
            return status(404, "NotFound", f'statefulsets.apps "{name}" not found', name)
        if name == "weird":
            return 200, {"kind": "StatefulSet", "apiVersion": "apps/v1"}
        if method == "PATCH":
            if self.headers.get("Content-Type") != "application/merge-patch+json":
                return status(415, "UnsupportedMediaType",
                              f'the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml')
            try:
                replicas = json.loads(body)["spec"]["replicas"]
            except (ValueError, KeyError, TypeError):
                return status(400, "BadRequest", "error decoding patch")
            if not isinstance(replicas, int) or replicas < 0:
                return status(422, "Invalid",
                              f'StatefulSet.apps "{name}" is invalid: spec.replicas: Invalid '
                              f'value: {replicas}: must be greater than or equal to 0', name)
            SETS[name]["spec"] = replicas
            return scale(name)
        reply = scale(name)
        s = SETS[name]
        s["status"] += (s["spec"] > s["status"]) - (s["spec"] < s["status"])
        return reply

    def do_GET(self):
        self.answer(*self.route("GET"))

    def do_PATCH(self):
        self.answer(*self.route("PATCH"))


def main():
    ap = argparse.ArgumentParser()
    for a in ("--cert", "--key", "--token-file", "--log"):
        ap.add_argument(a, required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    srv = http.server.HTTPServer(("127.0.0.1", args.port), Handler)
    srv.token_file, srv.log = args.token_file, args.log
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
