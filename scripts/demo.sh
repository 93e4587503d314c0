#!/usr/bin/env bash
# The demo: starts a local mosquitto (unless MQTT_HOST points at a broker), publishes JSON
# sensor readings to home/livingroom/sensor at QoS 1, prints what a subscriber on home/+/sensor
# receives, and exits after a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# Build output goes to standard error, so that standard output is the demo's alone.
swift build --product mqtt-sensor-demo >&2
exec "$(swift build --show-bin-path)/mqtt-sensor-demo"
