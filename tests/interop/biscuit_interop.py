"""The other side of the interoperability test: biscuit-python (PyPI) narrowing and verifying
mandates by docs/token-schema.md alone, with the keys mandate publishes.

  biscuit_interop.py narrow KEYS_JSON NOW_RFC3339 < token > narrowed
  biscuit_interop.py verify KEYS_JSON NOW_RFC3339 TOOL OPERATION < token > result.json
  biscuit_interop.py append KEYS_JSON NOW_RFC3339 DATALOG_FILE < token > narrowed
  biscuit_interop.py verify-call KEYS_JSON NOW_RFC3339 TOOL OPERATION ARGS_JSON < token > result.json
"""

import datetime
import json
import sys

import biscuit_auth as biscuit


def root_keys(path):
    """kid -> PublicKey, from a saved /.well-known/mandate-keys document."""
    with open(path) as f:
        document = json.load(f)
    keys = {}
    for key in document["keys"]:
        algorithm, hex_key = key["public_key"].split("/", 1)
        assert algorithm == "ed25519", algorithm
        keys[key["kid"]] = biscuit.PublicKey.from_bytes(bytes.fromhex(hex_key), biscuit.Algorithm.Ed25519)
    return lambda kid: keys[kid]


def narrow(token, keys, now):
    """A delegation block: only crm:read, a one-minute expiry, delegated to py-agent."""
    parsed = biscuit.Biscuit.from_base64(token, keys)
    block = biscuit.BlockBuilder(
        "delegate({agent});\n"
        "check if tool($tool), operation($operation), $tool == {tool} && $operation == {operation};\n"
        "check if time($time), $time <= {expires};",
        {
            "agent": "py-agent",
            "tool": "crm",
            "operation": "read",
            "expires": now + datetime.timedelta(seconds=60),
        },
    )
    return parsed.append(block).to_base64()


def append(token, keys, path):
    """A block of Datalog written as docs/token-schema.md shows it, appended as is."""
    parsed = biscuit.Biscuit.from_base64(token, keys)
    with open(path) as f:
        source = f.read()
    return parsed.append(biscuit.BlockBuilder(source)).to_base64()


def unhurried(builder):
    """Run limits no load on a test machine reaches (a second, not biscuit's default
    millisecond): the verdict is the Datalog's alone."""
    limits = builder.limits()
    limits.max_time = datetime.timedelta(seconds=1)
    builder.set_limits(limits)
    return builder


def verify(token, keys, now, tool, operation):
    """What a downstream service does: supply time, tool and operation; allow on a right."""
    parsed = biscuit.Biscuit.from_base64(token, keys)
    builder = biscuit.AuthorizerBuilder(
        "time({now}); tool({tool}); operation({operation});\n"
        "allow if mandate_schema(1), right({tool}, {operation});",
        {"now": now, "tool": tool, "operation": operation},
    )
    authorizer = unhurried(builder).build(parsed)
    try:
        authorizer.authorize()
    except biscuit.AuthorizationError as error:
        return {"allowed": False, "error": str(error)}
    principal = authorizer.query(biscuit.Rule("data($s, $i) <- principal($s, $i)"))
    subject = principal[0].terms[0] if principal else None
    return {"allowed": True, "principal": subject}


def verify_call(token, keys, now, tool, operation, arguments):
    """A tool boundary checking argument constraints: one `arg($path, $value)` per top-level
    string, integer or boolean argument, and per list of strings a set."""
    parsed = biscuit.Biscuit.from_base64(token, keys)
    builder = biscuit.AuthorizerBuilder(
        "time({now}); tool({tool}); operation({operation});\n"
        "allow if mandate_schema(1), right({tool}, {operation});",
        {"now": now, "tool": tool, "operation": operation},
    )
    for path, value in arguments.items():
        if isinstance(value, list):
            value = set(value)
        builder.add_fact(biscuit.Fact("arg({path}, {value})", {"path": path, "value": value}))
    authorizer = unhurried(builder).build(parsed)
    try:
        authorizer.authorize()
    except biscuit.AuthorizationError as error:
        return {"allowed": False, "error": str(error)}
    return {"allowed": True}


def main():
    command, keys_path, now = sys.argv[1], sys.argv[2], sys.argv[3]
    now = datetime.datetime.fromisoformat(now.replace("Z", "+00:00"))
    token = sys.stdin.read().strip()
    keys = root_keys(keys_path)
    if command == "narrow":
        print(narrow(token, keys, now))
    elif command == "append":
        print(append(token, keys, sys.argv[4]))
    elif command == "verify-call":
        arguments = json.loads(sys.argv[6])
        print(json.dumps(verify_call(token, keys, now, sys.argv[4], sys.argv[5], arguments)))
    elif command == "verify":
        print(json.dumps(verify(token, keys, now, sys.argv[4], sys.argv[5])))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
