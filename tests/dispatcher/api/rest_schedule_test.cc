// Connector schedules through the REST API: stored with the connector,
// checked (the error names the field), shown with their next run times,
// replaced and removed with PATCH, audited.
#include "gmock/gmock.h"
#include "tests/dispatcher/api/api_fixture.h"

namespace idsync::testing {
namespace {

absl::Time ParsedTime(const Json& value) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(
      value.is_string() &&
      absl::ParseTime(absl::RFC3339_full, value.get<std::string>(), &t, &error))
      << value.dump() << " " << error;
  return t;
}

class RestScheduleTest : public ApiTest {};

TEST_F(RestScheduleTest, ScheduleIsStoredAndShowsNextRuns) {
  Json body = CsvConnectorBody("hr", WriteCsv("hr.csv", 3));
  body["schedule"] = {{"incremental_every_minutes", 15},
                      {"full_cron", "0 2 * * *"},
                      {"time_zone", "Europe/Berlin"}};
  Reply created = Post("/api/v1/connectors", admin_, body);
  ASSERT_EQ(created.status, 201) << created.Describe();
  const int64_t id = created.json["id"].get<int64_t>();

  Reply got = Get(absl::StrCat("/api/v1/connectors/", id), admin_);
  ASSERT_EQ(got.status, 200) << got.Describe();
  const Json& s = got.json["schedule"];
  EXPECT_EQ(s["incremental_every_minutes"], 15);
  EXPECT_EQ(s["full_cron"], "0 2 * * *");
  EXPECT_EQ(s["time_zone"], "Europe/Berlin");
  const absl::Time updated = ParsedTime(got.json["updated_at"]);
  EXPECT_EQ(ParsedTime(s["next_incremental_at"]) - updated, absl::Minutes(15))
      << s.dump();
  // The next 02:00 in Berlin, within a day, on a whole minute.
  const absl::Time full = ParsedTime(s["next_full_at"]);
  EXPECT_GT(full, updated);
  EXPECT_LE(full - updated, absl::Hours(24));
  const absl::TimeZone berlin = [] {
    absl::TimeZone z;
    EXPECT_TRUE(absl::LoadTimeZone("Europe/Berlin", &z));
    return z;
  }();
  const absl::CivilSecond local = absl::ToCivilSecond(full, berlin);
  EXPECT_EQ(local.hour(), 2);
  EXPECT_EQ(local.minute(), 0);
  EXPECT_EQ(local.second(), 0);

  // Listed the same way.
  Reply list = Get("/api/v1/connectors", admin_);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.json["items"][0]["schedule"]["full_cron"], "0 2 * * *");

  // PATCH replaces it; an empty object removes it.
  Reply patched = Patch(absl::StrCat("/api/v1/connectors/", id), admin_,
                        {{"schedule", {{"incremental_every_minutes", 5}}}});
  ASSERT_EQ(patched.status, 200) << patched.Describe();
  EXPECT_EQ(patched.json["schedule"]["incremental_every_minutes"], 5);
  EXPECT_EQ(patched.json["schedule"]["full_cron"], "") << patched.body;
  EXPECT_TRUE(patched.json["schedule"]["next_full_at"].is_null());
  Reply removed = Patch(absl::StrCat("/api/v1/connectors/", id), admin_,
                        {{"schedule", Json::object()}});
  ASSERT_EQ(removed.status, 200) << removed.Describe();
  EXPECT_TRUE(removed.json["schedule"].is_null()) << removed.body;
  // A PATCH without "schedule" leaves it alone.
  Patch(absl::StrCat("/api/v1/connectors/", id), admin_,
        {{"schedule", {{"incremental_every_minutes", 30}}}});
  Reply other = Patch(absl::StrCat("/api/v1/connectors/", id), admin_,
                      {{"deletion_threshold", 0.5}});
  ASSERT_EQ(other.status, 200) << other.Describe();
  EXPECT_EQ(other.json["schedule"]["incremental_every_minutes"], 30);
}

TEST_F(RestScheduleTest, BadSchedulesAreRefusedAndChangeNothing) {
  const int64_t id = CreateCsvConnector(admin_, "hr", WriteCsv("hr.csv", 3));
  struct Case {
    Json schedule;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{{"incremental_every_minutes", -5}}, "incremental_every_minutes"},
      {{{"incremental_every_minutes", 20000}}, "between 0 (none) and 10080"},
      {{{"full_cron", "61 * * * *"}}, "'schedule.full_cron': cron: minute"},
      {{{"full_cron", "0 0 30 2 *"}}, "never matches"},
      {{{"full_cron", "0 2 * * *"}, {"time_zone", "Mars/Base"}},
       "unknown time zone"},
      {{{"time_zone", "UTC"}}, "'schedule.time_zone'"},
      {{{"full_cron", "@reboot"}}, "full_cron"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.schedule.dump());
    Reply r = Patch(absl::StrCat("/api/v1/connectors/", id), admin_,
                    {{"schedule", c.schedule}});
    EXPECT_EQ(r.status, 400) << r.Describe();
    EXPECT_THAT(r.body, ::testing::HasSubstr(c.says)) << r.Describe();
    Json body = CsvConnectorBody(absl::StrCat("bad-", r.status, c.says.size()),
                                 WriteCsv("x.csv", 1));
    body["schedule"] = c.schedule;
    EXPECT_EQ(Post("/api/v1/connectors", admin_, body).status, 400);
  }
  Reply got = Get(absl::StrCat("/api/v1/connectors/", id), admin_);
  EXPECT_TRUE(got.json["schedule"].is_null()) << got.body;
  Reply list = Get("/api/v1/connectors", admin_);
  EXPECT_EQ(list.json["items"].size(), 1u) << "no connector was created";
}

}  // namespace
}  // namespace idsync::testing
