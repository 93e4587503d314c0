#ifndef SWIFT_MOSQUITTO_SHIM_H
#define SWIFT_MOSQUITTO_SHIM_H

#include <mosquitto.h>
#include <mqtt_protocol.h>

#endif
