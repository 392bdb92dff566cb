"""
The benchmark payload: a small object (plus, in each call, one callback).
"""

PAYLOAD = {"id": 1, "name": "bench", "tags": ["a", "b"], "ok": True, "ratio": 0.5}
