"""The session's PHI log scan finds markers in server log lines and skips the test client's."""

from phi_log_scan import leaked_markers


def test_markers_in_server_lines_are_found_case_blind():
    text = '{"event": "request", "name": "Ada LOVELACE"}\nplain line\nERROR PhiMarker1a2b'
    assert [leak.split(":")[0] for leak in leaked_markers(text)] == ["lovelace", "phimarker"]


def test_the_test_clients_own_request_lines_are_not_server_logs():
    text = ('HTTP Request: GET http://testserver/dicomweb/studies?PatientName=Lovelace "200"\n'
            'INFO     httpx:_client.py:1025 HTTP Request: GET /search?q=Hopper')
    assert leaked_markers(text) == []
