"""The scripted test caller: real SIP calls into the sandbox PBX, checked by ear.

`sip` is the phone (a small SIP user agent with its own RTP clock), `scenario`
runs a YAML script on it (`asterisk-agent call SCENARIO.yaml`).
"""
