#include "connector/ldap/ldap_mapping.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;

std::string Norm(absl::string_view dn) {
  std::string out;
  EXPECT_TRUE(NormalizeDn(dn, &out)) << dn;
  return out;
}

TEST(NormalizeDnTest, SpellingsOfOneDnGiveOneKey) {
  EXPECT_EQ(Norm("uid=jdoe,ou=People,dc=Example,dc=com"),
            "uid=jdoe,ou=people,dc=example,dc=com");
  EXPECT_EQ(Norm("UID=JDoe, OU=People, DC=example, DC=com"),
            "uid=jdoe,ou=people,dc=example,dc=com");
  EXPECT_EQ(Norm("cn=Doe\\, John,ou=people,dc=example,dc=com"),
            Norm("CN=doe\\, john , ou=people,dc=example,dc=com"));
  EXPECT_EQ(Norm("cn=a+uid=b,dc=x"), Norm("uid=b+cn=a,dc=x"));
  EXPECT_EQ(Norm("cn=J\xC3\xBCrgen,dc=x"), "cn=j\xC3\xBCrgen,dc=x");
  std::string out;
  EXPECT_FALSE(NormalizeDn("", &out));
  EXPECT_FALSE(NormalizeDn("not a dn", &out));
  EXPECT_FALSE(NormalizeDn("=x,dc=x", &out));
}

TEST(NormalizeDnTest, RdnValueReadsTheFirstComponent) {
  EXPECT_EQ(RdnValue("uid=jdoe,ou=people,dc=x", "uid"), "jdoe");
  EXPECT_EQ(RdnValue("UID=jdoe,ou=people,dc=x", "uid"), "jdoe");
  EXPECT_EQ(RdnValue("cn=Doe\\, John,dc=x", "cn"), "Doe, John");
  EXPECT_EQ(RdnValue("cn=jdoe,dc=x", "uid"), std::nullopt);
  EXPECT_EQ(RdnValue("cn=a+uid=b,dc=x", "cn"), std::nullopt);
}

TEST(ParseRangeTest, ReadsActiveDirectoryRanges) {
  absl::string_view base;
  int64_t low = 0, high = 0;
  ASSERT_TRUE(ParseRange("member;range=0-1499", &base, &low, &high));
  EXPECT_EQ(base, "member");
  EXPECT_EQ(low, 0);
  EXPECT_EQ(high, 1499);
  ASSERT_TRUE(ParseRange("member;range=1500-*", &base, &low, &high));
  EXPECT_EQ(low, 1500);
  EXPECT_EQ(high, -1);
  EXPECT_FALSE(ParseRange("member", &base, &low, &high));
  EXPECT_FALSE(ParseRange("member;range=x-1", &base, &low, &high));
}

// Builds an entry by attribute name.
class EntryBuilder {
 public:
  explicit EntryBuilder(const AttributeSlots& slots) : slots_(slots) {
    entry_.Reset(slots.size());
  }
  EntryBuilder& Dn(std::string dn) {
    dn_ = std::move(dn);
    entry_.dn = dn_;
    return *this;
  }
  EntryBuilder& Add(absl::string_view name, std::string value) {
    storage_.push_back(std::make_unique<std::string>(std::move(value)));
    const int slot = slots_.Find(name);
    EXPECT_GE(slot, 0) << name;
    if (slot >= 0) entry_.values[slot].push_back(*storage_.back());
    return *this;
  }
  const LdapEntry& entry() const { return entry_; }

 private:
  const AttributeSlots& slots_;
  LdapEntry entry_;
  std::string dn_;
  std::vector<std::unique_ptr<std::string>> storage_;
};

LdapUserMapping InetOrgPerson() {
  LdapUserMapping m;
  m.external_id = {"uid"};
  m.username = {"uid"};
  m.email = {"mail"};
  m.first_name = {"givenName"};
  m.last_name = {"sn"};
  m.display_name = {"displayName", "cn"};
  m.department = {"departmentNumber", "ou"};
  m.job_title = {"title"};
  m.manager = {"manager"};
  m.attributes = {"employeeNumber"};
  return m;
}

TEST(LdapUserMapperTest, MapsInetOrgPersonToIdentityAndAccount) {
  AttributeSlots slots;
  LdapUserMapper mapper(InetOrgPerson(), slots);
  EXPECT_GE(slots.Find("GIVENNAME"), 0) << "names match in any case";
  EntryBuilder b(slots);
  b.Dn("uid=jdoe,ou=People,dc=example,dc=com")
      .Add("uid", "jdoe")
      .Add("mail", "jdoe@example.com")
      .Add("givenName", "John")
      .Add("sn", "Doe")
      .Add("cn", "John Doe")
      .Add("ou", "Sales")
      .Add("title", "Manager")
      .Add("manager", "uid=boss,ou=People,dc=example,dc=com")
      .Add("employeeNumber", "E1")
      .Add("employeeNumber", "E2");
  idsync::v1::RemoteIdentity identity;
  idsync::v1::RemoteAccount account;
  EXPECT_EQ(mapper.Map(b.entry(), "uid=jdoe,ou=people,dc=example,dc=com",
                       &identity, &account),
            "");
  EXPECT_EQ(identity.external_id(), "jdoe");
  EXPECT_EQ(identity.email(), "jdoe@example.com");
  EXPECT_EQ(identity.first_name(), "John");
  EXPECT_EQ(identity.last_name(), "Doe");
  EXPECT_EQ(identity.display_name(), "John Doe") << "cn when no displayName";
  EXPECT_EQ(identity.department(), "Sales") << "ou when no departmentNumber";
  EXPECT_EQ(identity.job_title(), "Manager");
  EXPECT_EQ(identity.status(), "active");
  EXPECT_EQ(identity.attributes().at("employeeNumber"), "E1\nE2");
  EXPECT_EQ(mapper.ManagerDn(b.entry()),
            "uid=boss,ou=People,dc=example,dc=com");
  EXPECT_EQ(mapper.single_id_attribute(), "uid");
  EXPECT_EQ(account.external_id(), "uid=jdoe,ou=people,dc=example,dc=com");
  EXPECT_EQ(account.identity_external_id(), "jdoe");
  EXPECT_EQ(account.username(), "jdoe");
}

TEST(LdapUserMapperTest, FirstPresentAttributeWinsAndMissingIdRejects) {
  LdapUserMapping m = InetOrgPerson();
  m.external_id = {"employeeNumber", "uid"};
  AttributeSlots slots;
  LdapUserMapper mapper(m, slots);
  EXPECT_EQ(mapper.single_id_attribute(), "");
  idsync::v1::RemoteIdentity identity;
  idsync::v1::RemoteAccount account;
  EntryBuilder with_number(slots);
  with_number.Dn("uid=a,dc=x").Add("uid", "a").Add("employeeNumber", "42");
  EXPECT_EQ(mapper.Map(with_number.entry(), "uid=a,dc=x", &identity, &account),
            "");
  EXPECT_EQ(identity.external_id(), "42");
  EntryBuilder without(slots);
  without.Dn("uid=b,dc=x").Add("uid", "b");
  EXPECT_EQ(mapper.Map(without.entry(), "uid=b,dc=x", &identity, &account), "");
  EXPECT_EQ(identity.external_id(), "b");
  EntryBuilder neither(slots);
  neither.Dn("cn=svc,dc=x").Add("cn", "svc");
  idsync::v1::RemoteAccount orphan;
  EXPECT_THAT(mapper.Map(neither.entry(), "cn=svc,dc=x", &identity, &orphan),
              HasSubstr("no employeeNumber or uid attribute"));
  EXPECT_EQ(orphan.external_id(), "cn=svc,dc=x") << "the account still maps";
  EXPECT_EQ(orphan.identity_external_id(), "");
}

TEST(LdapUserMapperTest, InvalidUtf8IsAReasonNotACrash) {
  AttributeSlots slots;
  LdapUserMapper mapper(InetOrgPerson(), slots);
  EntryBuilder b(slots);
  b.Dn("uid=a,dc=x").Add("uid", "a").Add("sn", std::string("D\xff", 2));
  idsync::v1::RemoteIdentity identity;
  idsync::v1::RemoteAccount account;
  EXPECT_THAT(mapper.Map(b.entry(), "uid=a,dc=x", &identity, &account),
              HasSubstr("sn is not valid UTF-8"));
}

TEST(LdapUserMapperTest, ActiveDirectoryUserAccountControlGivesStatus) {
  LdapUserMapping m;
  m.external_id = {"sAMAccountName"};
  m.username = {"sAMAccountName"};
  m.email = {"mail", "userPrincipalName"};
  m.status = {"userAccountControl"};
  AttributeSlots slots;
  LdapUserMapper mapper(m, slots);
  idsync::v1::RemoteIdentity identity;
  idsync::v1::RemoteAccount account;
  EntryBuilder enabled(slots);
  enabled.Dn("CN=Jane Roe,OU=Staff,DC=corp,DC=com")
      .Add("sAMAccountName", "jroe")
      .Add("userPrincipalName", "jroe@corp.com")
      .Add("userAccountControl", "512");
  EXPECT_EQ(mapper.Map(enabled.entry(), "k", &identity, &account), "");
  EXPECT_EQ(identity.status(), "active");
  EXPECT_EQ(identity.email(), "jroe@corp.com") << "UPN when no mail";
  EXPECT_EQ(account.username(), "jroe");
  EntryBuilder disabled(slots);
  disabled.Dn("CN=Old,DC=corp,DC=com")
      .Add("sAMAccountName", "old")
      .Add("userAccountControl", "514");
  EXPECT_EQ(mapper.Map(disabled.entry(), "k2", &identity, &account), "");
  EXPECT_EQ(identity.status(), "disabled");
  EXPECT_EQ(account.status(), "disabled");
}

TEST(LdapGroupMapperTest, MapsAGroupAndNamesItsMemberSlots) {
  LdapGroupMapping m;
  m.name = {"cn"};
  m.description = {"description"};
  m.member = {"member", "uniqueMember"};
  m.member_uid = {"memberUid"};
  m.attributes = {"gidNumber"};
  AttributeSlots slots;
  LdapGroupMapper mapper(m, slots);
  EXPECT_EQ(mapper.member_slots().size(), 2u);
  EXPECT_EQ(mapper.member_uid_slots().size(), 1u);
  EntryBuilder b(slots);
  b.Dn("cn=Admins,ou=groups,dc=x")
      .Add("cn", "Admins")
      .Add("description", "People who administer")
      .Add("gidNumber", "500");
  idsync::v1::RemoteEntitlement e;
  EXPECT_EQ(mapper.Map(b.entry(), "cn=admins,ou=groups,dc=x", &e), "");
  EXPECT_EQ(e.external_id(), "cn=admins,ou=groups,dc=x");
  EXPECT_EQ(e.name(), "Admins");
  EXPECT_EQ(e.description(), "People who administer");
  EXPECT_EQ(e.type(), "group");
  EXPECT_EQ(e.attributes().at("gidNumber"), "500");
}

TEST(GeneralizedTimeTest, ParsesTheFormsServersSend) {
  const absl::Time t = absl::FromUnixSeconds(1700000000);  // 20231114221320Z
  EXPECT_EQ(*ParseGeneralizedTime("20231114221320Z"), t);
  EXPECT_EQ(*ParseGeneralizedTime("20231114221320.0Z"), t);  // AD
  EXPECT_EQ(*ParseGeneralizedTime("20231114221320.123456Z"), t);
  EXPECT_EQ(*ParseGeneralizedTime("20231114231320+0100"), t);
  EXPECT_EQ(*ParseGeneralizedTime("202311142213Z"), t - absl::Seconds(20));
  EXPECT_EQ(FormatGeneralizedTime(t), "20231114221320Z");
  for (const char* bad : {"", "2023", "20231114221320", "20231314221320Z",
                          "20230230101010Z", "20231114221320Zjunk"}) {
    EXPECT_FALSE(ParseGeneralizedTime(bad).ok()) << bad;
  }
}

TEST(SyncTokenTest, RoundTripsAndRefusesForeignTokens) {
  const absl::Time t = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(EncodeSyncToken(t), "ldap1:20231114221320Z");
  EXPECT_EQ(**DecodeSyncToken("ldap1:20231114221320Z"), t);
  EXPECT_EQ(*DecodeSyncToken(""), std::nullopt);
  EXPECT_FALSE(DecodeSyncToken("csv1:0:0:0:0").ok());
  EXPECT_FALSE(DecodeSyncToken("ldap1:yesterday").ok());
}

TEST(WatermarkTest, NeverPassesTheWalkStartNorLagsTheNewestStamp) {
  const absl::Time start = absl::FromUnixSeconds(1700000000);
  const absl::Duration overlap = absl::Seconds(60);
  // Old changes only: the newest stamp + 1 s.
  EXPECT_EQ(NextWatermark(start - absl::Hours(5), start, overlap, {}),
            start - absl::Hours(5) + absl::Seconds(1));
  // A change during the walk may hide an earlier one: at most start - overlap.
  EXPECT_EQ(NextWatermark(start + absl::Seconds(3), start, overlap, {}),
            start - overlap);
  // Sub-second start: whole seconds, so changes in that second are re-read.
  EXPECT_EQ(
      NextWatermark(start + absl::Seconds(3), start + absl::Milliseconds(700),
                    absl::ZeroDuration(), {}),
      start);
  // Nothing seen: keep the previous one; never move backwards.
  EXPECT_EQ(NextWatermark(std::nullopt, start, overlap, start - absl::Hours(1)),
            start - absl::Hours(1));
  EXPECT_EQ(NextWatermark(std::nullopt, start, overlap, std::nullopt),
            std::nullopt);
  EXPECT_EQ(NextWatermark(start - absl::Hours(9), start, overlap,
                          start - absl::Hours(1)),
            start - absl::Hours(1));
}

}  // namespace
}  // namespace idsync
