"""Scenario 3's baseline: the least a relay does, forwarding the JSON with requests.

No validation, no guards, no metrics, no receipt: what is left of the service's cost
when all of that is taken away. bench/run.py runs it under the service's own
gunicorn.conf.py (same workers, threads, worker class and JSON access log).
"""

import os

import requests
from flask import Flask, request
from requests.adapters import HTTPAdapter

TARGET = os.environ["NAIVE_RELAY_TARGET"]  # the fake provider's Messages.json URL

app = Flask(__name__)
session = requests.Session()
session.mount("http://", HTTPAdapter(pool_maxsize=64))  # one kept-alive connection per thread


@app.post("/send")
def send():
    answer = session.post(TARGET, json=request.get_json(), timeout=10)
    return answer.content, 200 if answer.ok else 502, {"Content-Type": "application/json"}
