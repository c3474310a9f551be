#!/usr/bin/env python3
"""A local HTTP endpoint speaking the few Kubernetes API shapes that Helm's
`lookup` of a StatefulSet needs, so that `helm template --dry-run=server`
renders an upgrade against live objects without a cluster:
  GET /version, /api, /apis, /api/v1, /apis/apps/v1      discovery
  GET /apis/apps/v1/namespaces/NS/statefulsets/NAME      the live object
Any other request gets a metav1 Status 404. The live StatefulSets are given
as --statefulset NS/NAME=REPLICAS; every request is appended to --log.
The chosen port is written to --port-file once the server listens.
usage: fake_kube_api.py --port-file F --log L [--statefulset NS/NAME=N]..."""
import argparse
import http.server
import json
import re

STS = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/statefulsets/([^/?]+)$")


def not_found(path):
    return 404, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": f"{path} not found", "reason": "NotFound", "code": 404}


def resources(group_version, items):
    return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                 "resources": [{"name": n, "singularName": "", "namespaced": True, "kind": k,
                                "verbs": ["get", "list"]} for n, k in items]}


def answer(path, live):
    path = path.split("?", 1)[0]
    if path == "/version":
        return 200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
    if path == "/api":
        return 200, {"kind": "APIVersions", "versions": ["v1"],
                     "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                     "serverAddress": "127.0.0.1"}]}
    if path == "/apis":
        return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
             "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}]}
    if path == "/api/v1":
        return resources("v1", [("configmaps", "ConfigMap"), ("secrets", "Secret"),
                                ("services", "Service")])
    if path == "/apis/apps/v1":
        return resources("apps/v1", [("statefulsets", "StatefulSet"), ("deployments", "Deployment")])
    m = STS.match(path)
    if m and (m.group(1), m.group(2)) in live:
        ns, name = m.group(1), m.group(2)
        return 200, {"kind": "StatefulSet", "apiVersion": "apps/v1",
                     "metadata": {"name": name, "namespace": ns, "uid": "5e7f-" + name,
                                  "resourceVersion": "4242",
                                  "creationTimestamp": "2026-11-29T10:00:00Z"},
                     "spec": {"replicas": live[(ns, name)], "serviceName": name,
                              "selector": {"matchLabels": {}}, "template": {}},
                     "status": {"replicas": live[(ns, name)]}}
    return not_found(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--statefulset", action="append", default=[])
    a = ap.parse_args()
    live = {}
    for s in a.statefulset:
        where, n = s.rsplit("=", 1)
        ns, name = where.split("/", 1)
        live[(ns, name)] = int(n)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code, body = answer(self.path, live)
            with open(a.log, "a") as f:
                f.write(json.dumps({"method": "GET", "path": self.path, "code": code}) + "\n")
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(a.port_file + ".tmp", a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
