//! IAM (stored and echoed), Locations (configured list) and CMEK config (stored and echoed).
//!
//! Stratus does not enforce IAM policies: it stores them so tools that manage them keep
//! working. API access control is a separate, Stratus-level mechanism.

use stratus_types::proto::google::cloud::location::{
    GetLocationRequest, ListLocationsRequest, ListLocationsResponse, Location,
};
use stratus_types::proto::google::iam::v1::{
    GetIamPolicyRequest, Policy, SetIamPolicyRequest, TestIamPermissionsRequest,
    TestIamPermissionsResponse,
};
use stratus_types::proto::prost::Message;
use stratus_types::proto::tasks::{CmekConfig, GetCmekConfigRequest, UpdateCmekConfigRequest};
use stratus_types::{Code, LocationPath, QueuePath, Status};

use super::{Ctx, Service, map_store, required};
use sha2::{Digest, Sha256};

const CMEK: &str = "cmek";

fn cmek_location(name: &str) -> Result<LocationPath, Status> {
    name.strip_suffix("/cmekConfig")
        .and_then(|l| LocationPath::parse(l, "name").ok())
        .ok_or_else(|| {
            Status::invalid(format!(
                "name \"{name}\" must be formatted \"projects/<PROJECT_ID>/locations/<LOCATION_ID>/cmekConfig\"."
            ))
        })
}

impl Service {
    /// GetIamPolicy: the stored policy, `{}` when none was set.
    pub async fn get_iam_policy(&self, req: GetIamPolicyRequest) -> Result<Policy, Status> {
        let q = QueuePath::parse(&req.resource)?;
        self.store
            .get_iam_policy(&q)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))
    }

    /// SetIamPolicy: replaces the policy; a stale `etag` is refused with ABORTED.
    pub async fn set_iam_policy(&self, req: SetIamPolicyRequest) -> Result<Policy, Status> {
        let q = QueuePath::parse(&req.resource)?;
        let mut policy = req.policy.ok_or_else(|| required("policy"))?;
        let current = self
            .store
            .get_iam_policy(&q)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        if !policy.etag.is_empty() && policy.etag != current.etag {
            return Err(Status::new(
                Code::Aborted,
                "policy.etag does not match the current policy; read it again and retry.",
            ));
        }
        policy.etag = Default::default();
        let digest = Sha256::digest(policy.encode_to_vec());
        policy.etag = digest[..8].to_vec();
        self.store
            .set_iam_policy(&q, policy)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))
    }

    /// TestIamPermissions: every requested permission is granted (no IAM enforcement); a
    /// missing queue yields the empty set, as on the real service.
    pub async fn test_iam_permissions(
        &self,
        req: TestIamPermissionsRequest,
    ) -> Result<TestIamPermissionsResponse, Status> {
        let q = QueuePath::parse(&req.resource)?;
        let permissions = match self.store.get_queue(&q).await {
            Ok(_) => req.permissions,
            Err(stratus_store::StoreError::QueueNotFound) => Vec::new(),
            Err(e) => return Err(map_store(e, Ctx::Queue)),
        };
        Ok(TestIamPermissionsResponse { permissions })
    }

    fn location(&self, loc: &LocationPath) -> Location {
        Location {
            name: loc.to_string(),
            location_id: loc.location.clone(),
            display_name: loc.location.clone(),
            ..Default::default()
        }
    }

    /// Locations.ListLocations: the configured locations of the project.
    pub async fn list_locations(
        &self,
        req: ListLocationsRequest,
    ) -> Result<ListLocationsResponse, Status> {
        let project = req
            .name
            .strip_prefix("projects/")
            .filter(|p| stratus_types::names::valid_project_id(p))
            .ok_or_else(|| {
                Status::invalid(format!(
                    "name \"{}\" must be formatted \"projects/<PROJECT_ID>\".",
                    req.name
                ))
            })?;
        let locations = self
            .cfg
            .locations
            .iter()
            .map(|l| {
                self.location(&LocationPath {
                    project: project.to_string(),
                    location: l.clone(),
                })
            })
            .collect();
        Ok(ListLocationsResponse {
            locations,
            next_page_token: String::new(),
        })
    }

    /// Locations.GetLocation: any well-formed location (queues may live in any location).
    pub async fn get_location(&self, req: GetLocationRequest) -> Result<Location, Status> {
        let loc = LocationPath::parse(&req.name, "name")?;
        Ok(self.location(&loc))
    }

    /// GetCmekConfig: the stored config, or one with only the name.
    pub async fn get_cmek_config(&self, req: GetCmekConfigRequest) -> Result<CmekConfig, Status> {
        let loc = cmek_location(&req.name)?;
        let name = format!("{loc}/cmekConfig");
        let stored = self
            .store
            .get_blob(CMEK, &name)
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        Ok(stored
            .and_then(|b| CmekConfig::decode(b.as_slice()).ok())
            .unwrap_or(CmekConfig {
                name,
                kms_key: String::new(),
            }))
    }

    /// UpdateCmekConfig: stores and echoes `kms_key` (Stratus does not encrypt with it).
    pub async fn update_cmek_config(
        &self,
        req: UpdateCmekConfigRequest,
    ) -> Result<CmekConfig, Status> {
        let cfg = req.cmek_config.ok_or_else(|| required("cmek_config"))?;
        let loc = cmek_location(&cfg.name)?;
        let out = CmekConfig {
            name: format!("{loc}/cmekConfig"),
            kms_key: cfg.kms_key,
        };
        self.store
            .put_blob(CMEK, &out.name, out.encode_to_vec(), self.now())
            .await
            .map_err(|e| map_store(e, Ctx::Queue))?;
        Ok(out)
    }
}
