"""Stateful fakes of GitHub's issues API and Atlassian Statuspage, for respx.

They keep what a real server would (issues, comments, incidents), so the adapters' marker
searches and the rules' later calls meet the same world a real run would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import respx

GITHUB_API = "https://github.test"
REPO = "acme/postmortems"
STATUSPAGE_API = "https://statuspage.test"
PAGE_ID = "pg1"
GITHUB_TOKEN = "ghp-token-do-not-log"
STATUSPAGE_KEY = "sp-key-do-not-log"


@dataclass
class FakeGitHub:
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    creates: int = 0  # POST /issues received (whatever became of the reply)
    lose_next_create_reply: bool = False  # commit the issue, then time out

    def install(self, mock: respx.MockRouter) -> None:
        mock.route(host="github.test").mock(side_effect=self.handle)

    def close(self, number: int) -> None:
        self.issue(number)["state"] = "closed"

    def issue(self, number: int) -> dict[str, Any]:
        return next(i for i in self.issues if i["number"] == number)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
        path = request.url.path.removeprefix(f"/repos/{REPO}")
        parts = [p for p in path.split("/") if p]
        if request.method == "GET" and parts == ["issues"]:
            newest_first = sorted(self.issues, key=lambda i: -i["number"])
            return httpx.Response(200, json=newest_first[:100])
        if request.method == "POST" and parts == ["issues"]:
            self.creates += 1
            body = json.loads(request.content)
            number = len(self.issues) + 1
            issue = {
                "number": number,
                "html_url": f"https://github.test/{REPO}/issues/{number}",
                "state": "open",
                "title": body["title"],
                "body": body["body"],
                "labels": [{"name": n} for n in body.get("labels", [])],
            }
            self.issues.append(issue)
            if self.lose_next_create_reply:
                self.lose_next_create_reply = False
                raise httpx.ReadTimeout("reply lost", request=request)
            return httpx.Response(201, json=issue)
        if parts[:1] == ["issues"] and len(parts) >= 2:
            number = int(parts[1])
            if request.method == "GET" and len(parts) == 2:
                return httpx.Response(200, json=self.issue(number))
            if parts[2:] == ["comments"]:
                comments = self.comments.setdefault(number, [])
                if request.method == "GET":
                    return httpx.Response(200, json=comments)
                body = json.loads(request.content)
                comment = {"id": 1000 + len(comments), "body": body["body"], "html_url": "x"}
                comments.append(comment)
                return httpx.Response(201, json=comment)
        return httpx.Response(404, json={"message": "Not Found"})


@dataclass
class FakeStatuspage:
    incidents: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def install(self, mock: respx.MockRouter) -> None:
        mock.route(host="statuspage.test").mock(side_effect=self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"OAuth {STATUSPAGE_KEY}"
        path = request.url.path.removeprefix(f"/v1/pages/{PAGE_ID}")
        if request.method == "GET" and path == "/incidents/unresolved":
            unresolved = [i for i in self.incidents if i["status"] != "resolved"]
            page = int(request.url.params.get("page", "1"))
            return httpx.Response(200, json=unresolved if page == 1 else [])
        body = json.loads(request.content)["incident"]
        if request.method == "POST" and path == "/incidents":
            self.calls.append(("open", body))
            incident = {
                "id": f"inc{len(self.incidents) + 1}",
                "name": body["name"],
                "status": body["status"],
                "impact": body.get("impact_override", "none"),
                "metadata": body.get("metadata", {}),
                "shortlink": "https://stspg.io/x",
                "components": [
                    {"id": cid, "status": st} for cid, st in body.get("components", {}).items()
                ],
            }
            self.incidents.append(incident)
            return httpx.Response(201, json=incident)
        if request.method == "PATCH" and path.startswith("/incidents/"):
            incident_id = path.rsplit("/", 1)[1]
            incident = next(i for i in self.incidents if i["id"] == incident_id)
            self.calls.append((body["status"], body))
            incident["status"] = body["status"]
            return httpx.Response(200, json=incident)
        return httpx.Response(404, json={"error": "not found"})
