"""A paho-mqtt (Eclipse Paho, Python) client for the interoperability tests.

    paho_client.py pub --port P --protocol 311|5 --messages JSON
    paho_client.py sub --port P --protocol 311|5 --topic FILTER --qos Q --count N [--timeout S]

Connects to 127.0.0.1 only (the tests never talk to anything else).

`pub` publishes the messages of the JSON array, one after another, each as
{"topic": ..., "payload": ..., "qos": 0|1|2, "retain": bool, "user_properties": [[name, value], ...]},
waits for each one's acknowledgement before sending the next (so the order across QoS levels is
fixed), disconnects, prints `published N` and exits 0.

`sub` subscribes, prints `{"subscribed": [granted QoS or reason code]}` once the SUBACK arrived, then
one JSON line per message received: {"topic", "payload" (UTF-8 text), "qos", "retain",
"user_properties": [[name, value], ...] in the order received}, and exits 0 after N messages; 27
(as mosquitto_sub -W) if they do not arrive within the timeout. Every line is flushed at once.
Any failure: one line on stderr and exit status 1.
"""

import argparse
import json
import sys
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def emit(value):
    print(json.dumps(value), flush=True)


def fail(message):
    print(f"paho_client: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def make_client(protocol):
    version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
    return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=version)


def connect(client, port, protocol, timeout):
    connected = threading.Event()
    outcome = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        outcome["reason"] = reason_code
        connected.set()

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=30)
    client.loop_start()
    if not connected.wait(timeout):
        fail(f"no CONNACK within {timeout} s")
    if outcome["reason"].is_failure:
        fail(f"connection refused: {outcome['reason']}")


def publish(arguments):
    messages = json.loads(arguments.messages)
    client = make_client(arguments.protocol)
    connect(client, arguments.port, arguments.protocol, arguments.timeout)
    for message in messages:
        properties = None
        if message.get("user_properties"):
            if arguments.protocol != "5":
                fail("user properties need MQTT 5")
            properties = Properties(PacketTypes.PUBLISH)
            properties.UserProperty = [tuple(pair) for pair in message["user_properties"]]
        info = client.publish(
            message["topic"],
            message["payload"].encode("utf-8"),
            qos=message.get("qos", 0),
            retain=message.get("retain", False),
            properties=properties,
        )
        info.wait_for_publish(timeout=arguments.timeout)
        if not info.is_published():
            fail(f"publish of {message['topic']!r} not acknowledged within {arguments.timeout} s (rc {info.rc})")
    client.disconnect()
    client.loop_stop()
    print(f"published {len(messages)}", flush=True)


def subscribe(arguments):
    client = make_client(arguments.protocol)
    received = []
    done = threading.Event()

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        emit({"subscribed": [code.value for code in reason_codes]})

    def on_message(client, userdata, message):
        pairs = []
        if message.properties is not None and hasattr(message.properties, "UserProperty"):
            pairs = [list(pair) for pair in message.properties.UserProperty]
        emit({
            "topic": message.topic,
            "payload": message.payload.decode("utf-8"),
            "qos": message.qos,
            "retain": bool(message.retain),
            "user_properties": pairs,
        })
        received.append(message)
        if len(received) >= arguments.count:
            done.set()

    client.on_subscribe = on_subscribe
    client.on_message = on_message
    connect(client, arguments.port, arguments.protocol, arguments.timeout)
    result, _ = client.subscribe(arguments.topic, qos=arguments.qos)
    if result != mqtt.MQTT_ERR_SUCCESS:
        fail(f"subscribe failed: {mqtt.error_string(result)}")
    finished = done.wait(arguments.timeout)
    client.disconnect()
    client.loop_stop()
    if not finished:
        print("Timed out", file=sys.stderr, flush=True)
        sys.exit(27)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("pub", "sub"):
        command = commands.add_parser(name)
        command.add_argument("--port", type=int, required=True)
        command.add_argument("--protocol", choices=["311", "5"], required=True)
        command.add_argument("--timeout", type=float, default=10)
        if name == "pub":
            command.add_argument("--messages", required=True)
        else:
            command.add_argument("--topic", required=True)
            command.add_argument("--qos", type=int, choices=[0, 1, 2], required=True)
            command.add_argument("--count", type=int, required=True)
    arguments = parser.parse_args()
    try:
        if arguments.command == "pub":
            publish(arguments)
        else:
            subscribe(arguments)
    except SystemExit:
        raise
    except Exception as error:  # one line, never a traceback the test would have to parse
        fail(f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    main()
