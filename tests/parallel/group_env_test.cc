#include "worker/parallel/group_env.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace quarry {
namespace {

absl::StatusOr<GroupConfig> FromMap(const std::map<std::string, std::string>& env) {
  return GroupConfigFromEnv([&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(GroupEnv, DefaultsAreASingleRank) {
  auto c = FromMap({});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 0);
  EXPECT_EQ(c->world_size, 1);
  EXPECT_EQ(c->interface_host, "127.0.0.1");
  EXPECT_EQ(c->timeout.count(), 30000);
  EXPECT_EQ(c->group_name, "quarry");
}

TEST(GroupEnv, StatefulSetOrdinalAndService) {
  auto c = FromMap({{"HOSTNAME", "quarry-worker-g0-3"},
                    {"QUARRY_WORLD_SIZE", "4"},
                    {"QUARRY_MASTER_ADDR", "quarry-worker-g0-0.quarry-worker-g0"},
                    {"QUARRY_MASTER_PORT", "29600"},
                    {"QUARRY_GROUP_TIMEOUT_MS", "5000"},
                    {"QUARRY_GROUP_NAME", "g0"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 3);
  EXPECT_EQ(c->world_size, 4);
  EXPECT_EQ(c->master_addr, "quarry-worker-g0-0.quarry-worker-g0");
  EXPECT_EQ(c->master_port, 29600);
  EXPECT_EQ(c->timeout.count(), 5000);
  EXPECT_EQ(c->group_name, "g0");
  EXPECT_EQ(c->interface_host, "quarry-worker-g0-3");  // the pod's own name resolves to its IP
  EXPECT_TRUE(c->rendezvous_dir.empty());
}

TEST(GroupEnv, ExplicitRankAndLocalMode) {
  auto c = FromMap({{"HOSTNAME", "box-7"},
                    {"QUARRY_RANK", "1"},
                    {"QUARRY_WORLD_SIZE", "2"},
                    {"QUARRY_RENDEZVOUS_DIR", "/tmp/rdv"},
                    {"QUARRY_INTERFACE_HOST", "10.0.0.5"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rank, 1);
  EXPECT_EQ(c->rendezvous_dir, "/tmp/rdv");
  EXPECT_EQ(c->interface_host, "10.0.0.5");
  EXPECT_EQ(c->master_port, 29500);
}

TEST(GroupEnv, BadValuesNameTheVariable) {
  struct Case {
    std::map<std::string, std::string> env;
    std::string variable;
  };
  std::vector<Case> cases = {
      {{{"QUARRY_WORLD_SIZE", "zero"}}, "QUARRY_WORLD_SIZE"},
      {{{"QUARRY_WORLD_SIZE", "0"}}, "QUARRY_WORLD_SIZE"},
      {{{"QUARRY_WORLD_SIZE", "2"}, {"QUARRY_RANK", "2"}, {"QUARRY_RENDEZVOUS_DIR", "/d"}}, "QUARRY_RANK"},
      {{{"QUARRY_WORLD_SIZE", "2"}, {"QUARRY_RANK", "-1"}, {"QUARRY_RENDEZVOUS_DIR", "/d"}}, "QUARRY_RANK"},
      {{{"QUARRY_WORLD_SIZE", "2"}, {"QUARRY_RANK", "1x"}, {"QUARRY_RENDEZVOUS_DIR", "/d"}}, "QUARRY_RANK"},
      {{{"QUARRY_MASTER_PORT", "70000"}}, "QUARRY_MASTER_PORT"},
      {{{"QUARRY_GROUP_TIMEOUT_MS", "0"}}, "QUARRY_GROUP_TIMEOUT_MS"},
      {{{"QUARRY_GROUP_TIMEOUT_MS", "1.5"}}, "QUARRY_GROUP_TIMEOUT_MS"},
      {{{"QUARRY_WORLD_SIZE", "2"}, {"HOSTNAME", "worker"}, {"QUARRY_RENDEZVOUS_DIR", "/d"}}, "QUARRY_RANK"},
      {{{"QUARRY_WORLD_SIZE", "2"}, {"HOSTNAME", "worker-5"}, {"QUARRY_RENDEZVOUS_DIR", "/d"}}, "QUARRY_WORLD_SIZE"},
      {{{"QUARRY_WORLD_SIZE", "2"}, {"QUARRY_RANK", "1"}}, "QUARRY_MASTER_ADDR"},
  };
  for (const Case& c : cases) {
    auto r = FromMap(c.env);
    ASSERT_FALSE(r.ok()) << c.variable;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(r.status().message()).find(c.variable), std::string::npos) << r.status();
  }
}

TEST(GroupEnv, PodOrdinal) {
  EXPECT_EQ(PodOrdinalFromHostname("quarry-worker-0"), 0);
  EXPECT_EQ(PodOrdinalFromHostname("a-12"), 12);
  EXPECT_EQ(PodOrdinalFromHostname("worker"), -1);
  EXPECT_EQ(PodOrdinalFromHostname("worker-"), -1);
  EXPECT_EQ(PodOrdinalFromHostname("worker-1a"), -1);
}

}  // namespace
}  // namespace quarry
