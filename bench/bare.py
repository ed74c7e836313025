"""The baseline for bench/run.py: a bare Flask app answering with jsonify, nothing else."""

from flask import Flask, Response, jsonify

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> Response:
    """Answer like the kit's liveness probe, without the kit."""
    return jsonify({"code": 200, "msg": "ok", "data": {"status": "alive"}, "tracking_id": "-"})
