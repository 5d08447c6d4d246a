#include "connector/ldap/ldap_options.h"

#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

google::protobuf::Struct Json(const std::string& text) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &s).ok())
      << text;
  return s;
}

absl::StatusOr<LdapOptions> Parse(const std::string& text) {
  return ParseLdapOptions(Json(text));
}

std::string ErrorOf(const std::string& text) {
  auto o = Parse(text);
  EXPECT_FALSE(o.ok()) << text;
  EXPECT_TRUE(o.ok() || absl::IsInvalidArgument(o.status())) << o.status();
  return o.ok() ? "" : std::string(o.status().message());
}

constexpr char kMinimal[] =
    R"({"url": "ldap://dir.example.com", "user_base": "ou=people,dc=example,dc=com"})";

TEST(LdapOptionsTest, MinimalConfigGetsInetOrgPersonDefaults) {
  auto o = Parse(kMinimal);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->preset, "inetorgperson");
  EXPECT_EQ(o->user_filter, "(objectClass=inetOrgPerson)");
  EXPECT_EQ(o->group_filter,
            "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)"
            "(objectClass=posixGroup))");
  EXPECT_EQ(o->page_size, 1000);
  EXPECT_EQ(o->timeout_seconds, 60);
  EXPECT_FALSE(o->start_tls);
  EXPECT_TRUE(o->group_base.empty());
  EXPECT_THAT(o->user.external_id, ElementsAre("uid"));
  EXPECT_THAT(o->user.display_name, ElementsAre("displayName", "cn"));
  EXPECT_THAT(o->user.department, ElementsAre("departmentNumber", "ou"));
  EXPECT_THAT(o->user.manager, ElementsAre("manager"));
  EXPECT_THAT(o->user.attributes, ElementsAre("employeeNumber"));
  EXPECT_THAT(o->group.member, ElementsAre("member", "uniqueMember"));
  EXPECT_THAT(o->group.member_uid, ElementsAre("memberUid"));
}

TEST(LdapOptionsTest, ActiveDirectoryPreset) {
  auto o = Parse(R"({"url": "ldaps://dc1.corp.example.com:636",
      "user_base": "OU=Staff,DC=corp,DC=example,DC=com",
      "preset": "active_directory"})");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->user_filter, "(&(objectCategory=person)(objectClass=user))");
  EXPECT_EQ(o->group_filter, "(objectClass=group)");
  EXPECT_THAT(o->user.external_id, ElementsAre("sAMAccountName"));
  EXPECT_THAT(o->user.email, ElementsAre("mail", "userPrincipalName"));
  EXPECT_THAT(o->user.status, ElementsAre("userAccountControl"));
  EXPECT_THAT(o->user.department, ElementsAre("department"));
  EXPECT_TRUE(o->group.member_uid.empty());
}

TEST(LdapOptionsTest, MappingOverridesTakeStringsAndLists) {
  auto o = Parse(R"({"url": "ldap://h", "user_base": "dc=x",
      "mapping": {"external_id": ["employeeNumber", "uid"], "email": "mail",
                  "department": "", "attributes": ["l", "telephoneNumber"]},
      "group_mapping": {"name": ["cn"], "member_uid": []}})");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->user.external_id, ElementsAre("employeeNumber", "uid"));
  EXPECT_THAT(o->user.email, ElementsAre("mail"));
  EXPECT_TRUE(o->user.department.empty());
  EXPECT_THAT(o->user.attributes, ElementsAre("l", "telephoneNumber"));
  EXPECT_TRUE(o->group.member_uid.empty());
}

TEST(LdapOptionsTest, ErrorsNameTheKey) {
  EXPECT_THAT(ErrorOf(R"({"user_base": "dc=x"})"), HasSubstr("'url'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h"})"), HasSubstr("'user_base'"));
  EXPECT_THAT(ErrorOf(R"({"url": "http://h", "user_base": "dc=x"})"),
              HasSubstr("'url'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h/dc=x", "user_base": "dc=x"})"),
              HasSubstr("'url'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldaps://h", "user_base": "dc=x",
      "start_tls": true})"),
              HasSubstr("'start_tls'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "page_size": 0})"),
              HasSubstr("'page_size' must be an integer in [1, 10000]"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "page_size": 10001})"),
              HasSubstr("'page_size'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "not a dn"})"),
              HasSubstr("'user_base' is not a valid DN"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "user_filter": "objectClass=person"})"),
              HasSubstr("'user_filter'"));
  EXPECT_THAT(ErrorOf(R"j({"url": "ldap://h", "user_base": "dc=x",
      "group_filter": "(&(a=b)"})j"),
              HasSubstr("'group_filter' has unbalanced parentheses"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "preset": "novell"})"),
              HasSubstr("'preset'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "mapping": {"emial": "mail"}})"),
              HasSubstr("'mapping.emial' is not a known field"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "mapping": {"email": "mail)(x=y"}})"),
              HasSubstr("'mapping.email'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "mapping": {"external_id": []}})"),
              HasSubstr("'mapping.external_id'"));
  EXPECT_THAT(ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "bind_password_file": "/etc/pw"})"),
              HasSubstr("'bind_password_file' needs bind_dn"));
}

TEST(LdapOptionsTest, UnknownKeysAreRejectedAndSecretsNeverEchoed) {
  const std::string error = ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "bind_password": "hunter2-secret"})");
  EXPECT_THAT(error, HasSubstr("unknown key 'bind_password'"));
  EXPECT_THAT(error, Not(HasSubstr("hunter2-secret")));
  const std::string type = ErrorOf(R"({"url": "ldap://h", "user_base": "dc=x",
      "bind_dn": 42})");
  EXPECT_THAT(type, HasSubstr("'bind_dn' must be a string"));
}

}  // namespace
}  // namespace idsync
