import Testing
@testable import Mosquitto

@Suite("Topic validation and matching", .timeLimit(.minutes(1)))
struct TopicTests {
    @Test("valid publish topics pass", arguments: ["a", "a/b/c", "/", "home/livingroom/sensor", "$SYS/x", "ünïcødé/topic", " "])
    func validPublishTopicsPass(topic: String) throws {
        try MQTTTopic.validatePublishTopic(topic)
    }

    @Test("invalid publish topics are rejected with invalidTopic", arguments: ["", "a/+", "+", "#", "a/#", "a+b", "a/b#", "a\u{0}b"])
    func invalidPublishTopicsAreRejected(topic: String) {
        #expect(throws: MQTTError.self) { try MQTTTopic.validatePublishTopic(topic) }
        do {
            try MQTTTopic.validatePublishTopic(topic)
        } catch {
            #expect(error.code == .invalidTopic)
            #expect(error.operation == .validate)
        }
    }

    @Test("a prepared filter matches as MQTTTopic.matches does: byte for byte, wildcards, $ topics, shared subscriptions")
    func preparedFilterMatchesLikeLibmosquitto() {
        let cases: [(filter: String, topic: String)] = [
            ("a/b", "a/b"), ("a/b", "a/b/c"), ("a/b", "a/c"), ("caf\u{E9}", "cafe\u{301}"), ("caf\u{E9}", "caf\u{E9}"),
            ("a/+", "a/b"), ("a/+", "a/b/c"), ("a/#", "a"), ("#", "$SYS/x"), ("+/x", "$SYS/x"), ("$SYS/x", "$SYS/x"),
            ("$share/g/a/b", "a/b"), ("$share/g/a/+", "a/z"), ("$share/g/a/b", "$share/g/a/b"), ("", "a"),
        ]
        for (filter, topic) in cases {
            #expect(TopicMatcher(filter: filter).matches(topic) == MQTTTopic.matches(topic, filter: filter), "\(filter) vs \(topic)")
        }
        // Canonically equivalent but different bytes: different topics.
        #expect(!TopicMatcher(filter: "caf\u{E9}").matches("cafe\u{301}"))
        #expect(TopicMatcher(filter: "$share/g/a/b").matches("a/b"))
    }

    @Test("a topic longer than 65,535 bytes is rejected")
    func overlongTopicIsRejected() {
        let topic = String(repeating: "a", count: 65_536)
        #expect(throws: MQTTError(.invalidTopic, operation: .validate, detail: "65536 bytes, more than 65535")) {
            try MQTTTopic.validatePublishTopic(topic)
        }
        #expect(throws: Never.self) { try MQTTTopic.validatePublishTopic(String(repeating: "a", count: 65_535)) }
    }

    @Test("valid filters pass", arguments: ["a", "a/+", "+", "#", "a/#", "+/+/c", "a/+/#", "$share/group/a/#", "/#"])
    func validFiltersPass(filter: String) throws {
        try MQTTTopic.validateFilter(filter)
    }

    @Test("invalid filters are rejected with invalidTopicFilter",
          arguments: ["", "a/#/b", "#/a", "a#", "a/b+", "+a/b", "a/\u{0}", "$share/group", "$share//a", "$share/g+/a"])
    func invalidFiltersAreRejected(filter: String) {
        do {
            try MQTTTopic.validateFilter(filter)
            Issue.record("\(filter) was accepted")
        } catch {
            #expect(error.code == .invalidTopicFilter)
        }
    }

    @Test("matching follows MQTT wildcard rules")
    func matchingFollowsWildcardRules() {
        #expect(MQTTTopic.matches("home/livingroom/sensor", filter: "home/+/sensor"))
        #expect(MQTTTopic.matches("home/kitchen/sensor", filter: "home/#"))
        #expect(MQTTTopic.matches("home", filter: "home/#"))
        #expect(MQTTTopic.matches("a/b/c", filter: "#"))
        #expect(!MQTTTopic.matches("home/livingroom/lamp", filter: "home/+/sensor"))
        #expect(!MQTTTopic.matches("home/a/b/sensor", filter: "home/+/sensor"))
        #expect(!MQTTTopic.matches("$SYS/broker", filter: "#"))
        #expect(!MQTTTopic.matches("$SYS/broker", filter: "+/broker"))
        #expect(MQTTTopic.matches("$SYS/broker", filter: "$SYS/#"))
    }

    @Test("a shared subscription matches what its inner filter matches")
    func sharedSubscriptionMatchesInnerFilter() {
        #expect(MQTTTopic.matches("jobs/1", filter: "$share/workers/jobs/+"))
        #expect(!MQTTTopic.matches("other/1", filter: "$share/workers/jobs/+"))
    }

    @Test("invalid input never matches")
    func invalidInputNeverMatches() {
        #expect(!MQTTTopic.matches("a/b", filter: "a/#/b"))
        #expect(!MQTTTopic.matches("a\u{0}", filter: "#"))
    }
}
