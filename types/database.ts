
export type Json = string | number | boolean | null | { [key: string]: Json | undefined } | Json[]

export type Database = {
  
  "public": {
          Tables: {
            "audit_log": {
                  Row: {
                    "application": string,"id": number,"occurred_at": string,"person_id": string,"purpose": Database["public"]['Enums']["processing_purpose"],"reason": string,"worker": string
                  }
                  ComputedFields: never
                  Insert: {
                    "application": string,"id"?: never,"occurred_at"?: string,"person_id": string,"purpose": Database["public"]['Enums']["processing_purpose"],"reason": string,"worker": string
                  }
                  Update: {
                    "application"?: string,"id"?: never,"occurred_at"?: string,"person_id"?: string,"purpose"?: Database["public"]['Enums']["processing_purpose"],"reason"?: string,"worker"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "audit_log_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    }
                  ]
                },"consent": {
                  Row: {
                    "delete_models": boolean,"granted_at": string,"person_id": string,"purpose": Database["public"]['Enums']["processing_purpose"],"updated_at": string,"withdrawn_at": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "delete_models"?: boolean,"granted_at"?: string,"person_id": string,"purpose": Database["public"]['Enums']["processing_purpose"],"updated_at"?: string,"withdrawn_at"?: string | null
                  }
                  Update: {
                    "delete_models"?: boolean,"granted_at"?: string,"person_id"?: string,"purpose"?: Database["public"]['Enums']["processing_purpose"],"updated_at"?: string,"withdrawn_at"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "consent_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    }
                  ]
                },"day_pattern": {
                  Row: {
                    "computed_at": string,"day": string,"embedding": string,"filled_slots": number,"id": string,"person_id": string,"readings": number,"source": string
                  }
                  ComputedFields: never
                  Insert: {
                    "computed_at"?: string,"day": string,"embedding": string,"filled_slots": number,"id"?: string,"person_id": string,"readings": number,"source": string
                  }
                  Update: {
                    "computed_at"?: string,"day"?: string,"embedding"?: string,"filled_slots"?: number,"id"?: string,"person_id"?: string,"readings"?: number,"source"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "day_pattern_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    }
                  ]
                },"experiment": {
                  Row: {
                    "alpha": number,"created_at": string,"decided_at": string | null,"decision": Json | null,"description": string,"horizon_minutes": number,"id": string,"key": string,"max_persons_per_variant": number | null,"min_persons_per_variant": number,"min_points_per_person": number,"mixture_sd": number,"started_at": string | null,"status": Database["public"]['Enums']["experiment_status"],"stopped_at": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "alpha"?: number,"created_at"?: string,"decided_at"?: string | null,"decision"?: Json | null,"description": string,"horizon_minutes"?: number,"id"?: string,"key": string,"max_persons_per_variant"?: number | null,"min_persons_per_variant"?: number,"min_points_per_person"?: number,"mixture_sd"?: number,"started_at"?: string | null,"status"?: Database["public"]['Enums']["experiment_status"],"stopped_at"?: string | null
                  }
                  Update: {
                    "alpha"?: number,"created_at"?: string,"decided_at"?: string | null,"decision"?: Json | null,"description"?: string,"horizon_minutes"?: number,"id"?: string,"key"?: string,"max_persons_per_variant"?: number | null,"min_persons_per_variant"?: number,"min_points_per_person"?: number,"mixture_sd"?: number,"started_at"?: string | null,"status"?: Database["public"]['Enums']["experiment_status"],"stopped_at"?: string | null
                  }
                  Relationships: [
                    
                  ]
                },"experiment_assignment": {
                  Row: {
                    "assigned_at": string,"experiment_id": string,"person_id": string,"variant": string
                  }
                  ComputedFields: never
                  Insert: {
                    "assigned_at"?: string,"experiment_id": string,"person_id": string,"variant": string
                  }
                  Update: {
                    "assigned_at"?: string,"experiment_id"?: string,"person_id"?: string,"variant"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "experiment_assignment_experiment_id_variant_fkey"
      columns: ["experiment_id","variant"]
isOneToOne: false
      referencedRelation: "experiment_variant"
      referencedColumns: ["experiment_id","name"]
    },{
      foreignKeyName: "experiment_assignment_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    }
                  ]
                },"experiment_exposure": {
                  Row: {
                    "contaminated": boolean,"contamination": string | null,"experiment_id": string,"forecast_generated_at": string,"id": string,"model_id": string,"person_id": string,"served_at": string,"variant": string
                  }
                  ComputedFields: never
                  Insert: {
                    "contaminated": boolean,"contamination"?: string | null,"experiment_id": string,"forecast_generated_at": string,"id"?: string,"model_id": string,"person_id": string,"served_at"?: string,"variant": string
                  }
                  Update: {
                    "contaminated"?: boolean,"contamination"?: string | null,"experiment_id"?: string,"forecast_generated_at"?: string,"id"?: string,"model_id"?: string,"person_id"?: string,"served_at"?: string,"variant"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "experiment_exposure_experiment_id_person_id_variant_fkey"
      columns: ["experiment_id","person_id","variant"]
isOneToOne: false
      referencedRelation: "experiment_assignment"
      referencedColumns: ["experiment_id","person_id","variant"]
    },{
      foreignKeyName: "experiment_exposure_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    }
                  ]
                },"experiment_variant": {
                  Row: {
                    "experiment_id": string,"families": (string)[],"name": string,"weight": number
                  }
                  ComputedFields: never
                  Insert: {
                    "experiment_id": string,"families": (string)[],"name": string,"weight"?: number
                  }
                  Update: {
                    "experiment_id"?: string,"families"?: (string)[],"name"?: string,"weight"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "experiment_variant_experiment_id_fkey"
      columns: ["experiment_id"]
isOneToOne: false
      referencedRelation: "experiment"
      referencedColumns: ["id"]
    }
                  ]
                },"forecast": {
                  Row: {
                    "code_version": string,"coverage": number,"created_at": string,"data_from": string,"data_to": string,"disclaimer_version": string,"generated_at": string,"id": string,"model_id": string,"model_version": string,"owner_id": string,"person_id": string,"source_count": number,"training_run_id": string | null
                  }
                  ComputedFields: never
                  Insert: {
                    "code_version": string,"coverage": number,"created_at"?: string,"data_from": string,"data_to": string,"disclaimer_version": string,"generated_at": string,"id"?: string,"model_id": string,"model_version": string,"owner_id": string,"person_id": string,"source_count"?: number,"training_run_id"?: string | null
                  }
                  Update: {
                    "code_version"?: string,"coverage"?: number,"created_at"?: string,"data_from"?: string,"data_to"?: string,"disclaimer_version"?: string,"generated_at"?: string,"id"?: string,"model_id"?: string,"model_version"?: string,"owner_id"?: string,"person_id"?: string,"source_count"?: number,"training_run_id"?: string | null
                  }
                  Relationships: [
                    {
      foreignKeyName: "forecast_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    },{
      foreignKeyName: "forecast_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "forecast_training_run_id_person_id_fkey"
      columns: ["training_run_id","person_id"]
isOneToOne: false
      referencedRelation: "training_run"
      referencedColumns: ["id","person_id"]
    }
                  ]
                },"forecast_feedback": {
                  Row: {
                    "comment": string | null,"created_at": string,"id": string,"model_id": string,"model_version": string,"person_id": string,"prediction_id": string,"rating": Database["public"]['Enums']["feedback_rating"],"updated_at": string,"user_id": string
                  }
                  ComputedFields: never
                  Insert: {
                    "comment"?: string | null,"created_at"?: string,"id"?: string,"model_id": string,"model_version": string,"person_id": string,"prediction_id": string,"rating": Database["public"]['Enums']["feedback_rating"],"updated_at"?: string,"user_id"?: string
                  }
                  Update: {
                    "comment"?: string | null,"created_at"?: string,"id"?: string,"model_id"?: string,"model_version"?: string,"person_id"?: string,"prediction_id"?: string,"rating"?: Database["public"]['Enums']["feedback_rating"],"updated_at"?: string,"user_id"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "forecast_feedback_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    }
                  ]
                },"forecast_outcome": {
                  Row: {
                    "coverage": number,"error_mg_dl": number,"generated_at": string,"horizon_minutes": number,"inside_band": boolean,"model_id": string,"model_version": string,"observation_id": string,"observed_at": string,"observed_mg_dl": number,"owner_id": string,"person_id": string,"predicted_mg_dl": number,"prediction_id": string,"recorded_at": string,"target_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "coverage": number,"error_mg_dl": number,"generated_at": string,"horizon_minutes": number,"inside_band": boolean,"model_id": string,"model_version": string,"observation_id": string,"observed_at": string,"observed_mg_dl": number,"owner_id": string,"person_id": string,"predicted_mg_dl": number,"prediction_id": string,"recorded_at"?: string,"target_at": string
                  }
                  Update: {
                    "coverage"?: number,"error_mg_dl"?: number,"generated_at"?: string,"horizon_minutes"?: number,"inside_band"?: boolean,"model_id"?: string,"model_version"?: string,"observation_id"?: string,"observed_at"?: string,"observed_mg_dl"?: number,"owner_id"?: string,"person_id"?: string,"predicted_mg_dl"?: number,"prediction_id"?: string,"recorded_at"?: string,"target_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "forecast_outcome_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    },{
      foreignKeyName: "forecast_outcome_observation_id_observed_at_fkey"
      columns: ["observation_id","observed_at"]
isOneToOne: false
      referencedRelation: "observation"
      referencedColumns: ["id","effective_at"]
    }
                  ]
                },"ml_model": {
                  Row: {
                    "algorithm": string,"artifact_sha256": string | null,"card": Json | null,"created_at": string,"data_from": string,"data_to": string,"features": (string)[],"hyperparameters": NonNullable<Json>,"id": string,"is_fallback": boolean,"last_used_at": string | null,"metrics": NonNullable<Json>,"model_type": string,"person_id": string,"stage": Database["public"]['Enums']["model_stage"],"stage_reason": string | null,"storage_path": string | null,"trained_at": string,"training_run_id": string | null,"updated_at": string,"version": string
                  }
                  ComputedFields: never
                  Insert: {
                    "algorithm": string,"artifact_sha256"?: string | null,"card"?: Json | null,"created_at"?: string,"data_from": string,"data_to": string,"features"?: (string)[],"hyperparameters"?: NonNullable<Json>,"id"?: string,"is_fallback"?: boolean,"last_used_at"?: string | null,"metrics"?: NonNullable<Json>,"model_type"?: string,"person_id": string,"stage"?: Database["public"]['Enums']["model_stage"],"stage_reason"?: string | null,"storage_path"?: string | null,"trained_at"?: string,"training_run_id"?: string | null,"updated_at"?: string,"version": string
                  }
                  Update: {
                    "algorithm"?: string,"artifact_sha256"?: string | null,"card"?: Json | null,"created_at"?: string,"data_from"?: string,"data_to"?: string,"features"?: (string)[],"hyperparameters"?: NonNullable<Json>,"id"?: string,"is_fallback"?: boolean,"last_used_at"?: string | null,"metrics"?: NonNullable<Json>,"model_type"?: string,"person_id"?: string,"stage"?: Database["public"]['Enums']["model_stage"],"stage_reason"?: string | null,"storage_path"?: string | null,"trained_at"?: string,"training_run_id"?: string | null,"updated_at"?: string,"version"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "ml_model_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "ml_model_training_run_id_person_id_fkey"
      columns: ["training_run_id","person_id"]
isOneToOne: false
      referencedRelation: "training_run"
      referencedColumns: ["id","person_id"]
    }
                  ]
                },"model_health_check": {
                  Row: {
                    "checked_at": string,"degraded": boolean,"drift_psi": number | null,"drift_readings": number | null,"horizon_minutes": number,"id": string,"live_coverage": number | null,"live_rmse_mg_dl": number | null,"model_id": string,"nominal_coverage": number | null,"outcomes": number,"person_id": string,"reason": string,"retrain_request_id": string | null,"test_rmse_mg_dl": number | null,"window_from": string,"window_to": string
                  }
                  ComputedFields: never
                  Insert: {
                    "checked_at"?: string,"degraded": boolean,"drift_psi"?: number | null,"drift_readings"?: number | null,"horizon_minutes": number,"id"?: string,"live_coverage"?: number | null,"live_rmse_mg_dl"?: number | null,"model_id": string,"nominal_coverage"?: number | null,"outcomes": number,"person_id": string,"reason": string,"retrain_request_id"?: string | null,"test_rmse_mg_dl"?: number | null,"window_from": string,"window_to": string
                  }
                  Update: {
                    "checked_at"?: string,"degraded"?: boolean,"drift_psi"?: number | null,"drift_readings"?: number | null,"horizon_minutes"?: number,"id"?: string,"live_coverage"?: number | null,"live_rmse_mg_dl"?: number | null,"model_id"?: string,"nominal_coverage"?: number | null,"outcomes"?: number,"person_id"?: string,"reason"?: string,"retrain_request_id"?: string | null,"test_rmse_mg_dl"?: number | null,"window_from"?: string,"window_to"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "model_health_check_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    }
                  ]
                },"observation": {
                  Row: {
                    "category": string,"code": string,"code_system": string,"created_at": string,"device": string | null,"effective_at": string,"id": string,"issued_at": string | null,"original_unit": string | null,"original_value": number | null,"person_id": string,"resource": Json | null,"source_id": string,"source_system": string,"status": string,"unit": string,"updated_at": string,"value": number
                  }
                  ComputedFields: never
                  Insert: {
                    "category"?: string,"code": string,"code_system"?: string,"created_at"?: string,"device"?: string | null,"effective_at": string,"id"?: string,"issued_at"?: string | null,"original_unit"?: string | null,"original_value"?: number | null,"person_id": string,"resource"?: Json | null,"source_id": string,"source_system": string,"status"?: string,"unit": string,"updated_at"?: string,"value": number
                  }
                  Update: {
                    "category"?: string,"code"?: string,"code_system"?: string,"created_at"?: string,"device"?: string | null,"effective_at"?: string,"id"?: string,"issued_at"?: string | null,"original_unit"?: string | null,"original_value"?: number | null,"person_id"?: string,"resource"?: Json | null,"source_id"?: string,"source_system"?: string,"status"?: string,"unit"?: string,"updated_at"?: string,"value"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "observation_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    }
                  ]
                },"person": {
                  Row: {
                    "created_at": string,"display_name": string | null,"glucose_unit": string,"id": string,"owner_id": string,"time_zone": string,"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "created_at"?: string,"display_name"?: string | null,"glucose_unit"?: string,"id"?: string,"owner_id"?: string,"time_zone"?: string,"updated_at"?: string
                  }
                  Update: {
                    "created_at"?: string,"display_name"?: string | null,"glucose_unit"?: string,"id"?: string,"owner_id"?: string,"time_zone"?: string,"updated_at"?: string
                  }
                  Relationships: [
                    
                  ]
                },"prediction": {
                  Row: {
                    "forecast_id": string,"generated_at": string,"horizon_minutes": number,"id": string,"lower_mg_dl": number,"model_id": string,"owner_id": string,"person_id": string,"target_at": string,"upper_mg_dl": number,"value_mg_dl": number
                  }
                  ComputedFields: never
                  Insert: {
                    "forecast_id": string,"generated_at": string,"horizon_minutes": number,"id"?: string,"lower_mg_dl": number,"model_id": string,"owner_id": string,"person_id": string,"target_at": string,"upper_mg_dl": number,"value_mg_dl": number
                  }
                  Update: {
                    "forecast_id"?: string,"generated_at"?: string,"horizon_minutes"?: number,"id"?: string,"lower_mg_dl"?: number,"model_id"?: string,"owner_id"?: string,"person_id"?: string,"target_at"?: string,"upper_mg_dl"?: number,"value_mg_dl"?: number
                  }
                  Relationships: [
                    {
      foreignKeyName: "prediction_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    }
                  ]
                },"prediction_source": {
                  Row: {
                    "forecast_id": string,"generated_at": string,"model_id": string,"observation_effective_at": string,"observation_id": string,"owner_id": string,"person_id": string,"role": Database["public"]['Enums']["prediction_source_role"]
                  }
                  ComputedFields: never
                  Insert: {
                    "forecast_id": string,"generated_at": string,"model_id": string,"observation_effective_at": string,"observation_id": string,"owner_id": string,"person_id": string,"role"?: Database["public"]['Enums']["prediction_source_role"]
                  }
                  Update: {
                    "forecast_id"?: string,"generated_at"?: string,"model_id"?: string,"observation_effective_at"?: string,"observation_id"?: string,"owner_id"?: string,"person_id"?: string,"role"?: Database["public"]['Enums']["prediction_source_role"]
                  }
                  Relationships: [
                    {
      foreignKeyName: "prediction_source_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    },{
      foreignKeyName: "prediction_source_observation_id_observation_effective_at_fkey"
      columns: ["observation_id","observation_effective_at"]
isOneToOne: false
      referencedRelation: "observation"
      referencedColumns: ["id","effective_at"]
    }
                  ]
                },"quarantined_entry": {
                  Row: {
                    "entry_index": number | null,"errors": NonNullable<Json>,"id": string,"payload": string,"person_id": string,"received_at": string,"source": string
                  }
                  ComputedFields: never
                  Insert: {
                    "entry_index"?: number | null,"errors": NonNullable<Json>,"id"?: string,"payload": string,"person_id": string,"received_at"?: string,"source": string
                  }
                  Update: {
                    "entry_index"?: number | null,"errors"?: NonNullable<Json>,"id"?: string,"payload"?: string,"person_id"?: string,"received_at"?: string,"source"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "quarantined_entry_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    }
                  ]
                },"retrain_request": {
                  Row: {
                    "attempts": number,"duplicates": number,"error": string | null,"finished_at": string | null,"id": string,"lease_expires_at": string | null,"msg_id": number,"person_id": string,"reason": string | null,"requested_at": string,"started_at": string | null,"status": Database["public"]['Enums']["retrain_status"],"training_run_id": string | null,"trigger": Database["public"]['Enums']["training_trigger"],"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "attempts"?: number,"duplicates"?: number,"error"?: string | null,"finished_at"?: string | null,"id"?: string,"lease_expires_at"?: string | null,"msg_id": number,"person_id": string,"reason"?: string | null,"requested_at"?: string,"started_at"?: string | null,"status"?: Database["public"]['Enums']["retrain_status"],"training_run_id"?: string | null,"trigger": Database["public"]['Enums']["training_trigger"],"updated_at"?: string
                  }
                  Update: {
                    "attempts"?: number,"duplicates"?: number,"error"?: string | null,"finished_at"?: string | null,"id"?: string,"lease_expires_at"?: string | null,"msg_id"?: number,"person_id"?: string,"reason"?: string | null,"requested_at"?: string,"started_at"?: string | null,"status"?: Database["public"]['Enums']["retrain_status"],"training_run_id"?: string | null,"trigger"?: Database["public"]['Enums']["training_trigger"],"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "retrain_request_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    },{
      foreignKeyName: "retrain_request_training_run_id_person_id_fkey"
      columns: ["training_run_id","person_id"]
isOneToOne: false
      referencedRelation: "training_run"
      referencedColumns: ["id","person_id"]
    }
                  ]
                },"training_run": {
                  Row: {
                    "attempt": number,"created_at": string,"error": string | null,"finished_at": string | null,"id": string,"log_path": string | null,"metrics": NonNullable<Json>,"model_type": string,"person_id": string,"reason": string | null,"requested_at": string,"started_at": string | null,"status": Database["public"]['Enums']["training_status"],"trigger": Database["public"]['Enums']["training_trigger"],"updated_at": string
                  }
                  ComputedFields: never
                  Insert: {
                    "attempt"?: number,"created_at"?: string,"error"?: string | null,"finished_at"?: string | null,"id"?: string,"log_path"?: string | null,"metrics"?: NonNullable<Json>,"model_type"?: string,"person_id": string,"reason"?: string | null,"requested_at"?: string,"started_at"?: string | null,"status"?: Database["public"]['Enums']["training_status"],"trigger": Database["public"]['Enums']["training_trigger"],"updated_at"?: string
                  }
                  Update: {
                    "attempt"?: number,"created_at"?: string,"error"?: string | null,"finished_at"?: string | null,"id"?: string,"log_path"?: string | null,"metrics"?: NonNullable<Json>,"model_type"?: string,"person_id"?: string,"reason"?: string | null,"requested_at"?: string,"started_at"?: string | null,"status"?: Database["public"]['Enums']["training_status"],"trigger"?: Database["public"]['Enums']["training_trigger"],"updated_at"?: string
                  }
                  Relationships: [
                    {
      foreignKeyName: "training_run_person_id_fkey"
      columns: ["person_id"]
isOneToOne: false
      referencedRelation: "person"
      referencedColumns: ["id"]
    }
                  ]
                }
          }
          Views: {
            "model_daily_accuracy": {
                  Row: {
                    "coverage": number | null,"day": string | null,"forecasts": number | null,"grmse_mg_dl": number | null,"highs": number | null,"highs_detected": number | null,"highs_forecast": number | null,"horizon_minutes": number | null,"lows": number | null,"lows_detected": number | null,"lows_forecast": number | null,"mae_mg_dl": number | null,"mard_percent": number | null,"model_id": string | null,"model_version": string | null,"nominal_coverage": number | null,"outcomes": number | null,"person_id": string | null,"rmse_mg_dl": number | null
                  }
                  ComputedFields: never
                  Relationships: [
                    
                  ]
                },"model_feedback_summary": {
                  Row: {
                    "comments": number | null,"last_feedback_at": string | null,"model_id": string,"model_version": string,"person_id": string,"thumbs_down": number | null,"thumbs_up": number | null
                  }
                  ComputedFields: never
                  Relationships: [
                    {
      foreignKeyName: "forecast_feedback_model_id_person_id_fkey"
      columns: ["model_id","person_id"]
isOneToOne: false
      referencedRelation: "ml_model"
      referencedColumns: ["id","person_id"]
    }
                  ]
                }
          }
          Functions: {
            "cgm_summary":
{ Args: { "from": string,"person_id": string,"to": string }; Returns: {
              "cv_percent": number,"days_of_wear": number,"expected_readings": number,"gmi_percent": number,"high_percent": number,"in_range_percent": number,"low_percent": number,"mean_mg_dl": number,"period_from": string,"period_to": string,"reading_interval_seconds": number,"readings": number,"reason": string,"sd_mg_dl": number,"sensor_active_percent": number,"sufficient": boolean,"very_high_percent": number,"very_low_percent": number
            }[]
                           },
"forecast_point":
{ Args: { "language"?: string,"prediction_id": string }; Returns: {
              "code_version": string,"coverage": number,"data_from": string,"data_to": string,"disclaimer": string,"disclaimer_version": string,"forecast_id": string,"generated_at": string,"horizon_minutes": number,"id": string,"lower_mg_dl": number,"model_id": string,"model_version": string,"person_id": string,"sources": Json,"target_at": string,"training_run_id": string,"upper_mg_dl": number,"value_mg_dl": number
            }[]
                           },
"forecast_retention":
{ Args: Record<PropertyKey, never>; Returns: {
              "keep_after_outcomes": string,"longest_horizon": string,"outcome_lookback": string
            }[]
                           },
"latest_forecast":
{ Args: { "language"?: string,"person_id": string }; Returns: {
              "code_version": string,"coverage": number,"data_from": string,"data_to": string,"disclaimer": string,"disclaimer_version": string,"forecast_id": string,"generated_at": string,"horizon_minutes": number,"id": string,"lower_mg_dl": number,"model_id": string,"model_version": string,"person_id": string,"source_count": number,"target_at": string,"training_run_id": string,"upper_mg_dl": number,"value_mg_dl": number
            }[]
                           },
"person_models":
{ Args: { "person_id": string }; Returns: {
              "algorithm": string,"artifact_sha256": string,"card": Json,"data_from": string,"data_to": string,"features": (string)[],"id": string,"is_fallback": boolean,"metrics": Json,"stage": string,"stage_reason": string,"storage_path": string,"trained_at": string,"training_run_id": string,"version": string
            }[]
                           },
"request_retrain":
{ Args: { "person_id": string,"reason"?: string }; Returns: string
                           }
          }
          Enums: {
            "experiment_status": "draft"|"running"|"stopped"|"decided","feedback_rating": "up"|"down","model_stage": "candidate"|"active"|"archived"|"rejected","prediction_source_role": "input_window"|"covariate","processing_purpose": "training"|"forecasting"|"pattern_search"|"deletion","retrain_status": "queued"|"running"|"done"|"failed","training_status": "queued"|"running"|"succeeded"|"failed"|"cancelled","training_trigger": "initial"|"scheduled"|"new_data"|"performance"|"user_request"
          }
          CompositeTypes: {
            [_ in never]: never
          }
        }
}

type DatabaseWithoutInternals = Omit<Database, '__InternalSupabase'>

type DefaultSchema = DatabaseWithoutInternals[Extract<keyof Database, "public">]

export type Tables<
  DefaultSchemaTableNameOrOptions extends
    | keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
        DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? (DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"] &
      DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Views"])[TableName] extends {
      Row: infer R
    }
    ? R
    : never
  : DefaultSchemaTableNameOrOptions extends keyof (DefaultSchema["Tables"] & DefaultSchema["Views"])
  ? (DefaultSchema["Tables"] & DefaultSchema["Views"])[DefaultSchemaTableNameOrOptions] extends {
      Row: infer R
    }
    ? R
    : never
  : never

export type TablesInsert<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Insert: infer I
    }
    ? I
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
  ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
      Insert: infer I
    }
    ? I
    : never
  : never

export type TablesUpdate<
  DefaultSchemaTableNameOrOptions extends
    | keyof DefaultSchema["Tables"]
    | { schema: keyof DatabaseWithoutInternals },
  TableName extends DefaultSchemaTableNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"]
    : never = never
> = DefaultSchemaTableNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaTableNameOrOptions["schema"]]["Tables"][TableName] extends {
      Update: infer U
    }
    ? U
    : never
  : DefaultSchemaTableNameOrOptions extends keyof DefaultSchema["Tables"]
  ? DefaultSchema["Tables"][DefaultSchemaTableNameOrOptions] extends {
      Update: infer U
    }
    ? U
    : never
  : never

export type Enums<
  DefaultSchemaEnumNameOrOptions extends
    | keyof DefaultSchema["Enums"]
    | { schema: keyof DatabaseWithoutInternals },
  EnumName extends DefaultSchemaEnumNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"]
    : never = never
> = DefaultSchemaEnumNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[DefaultSchemaEnumNameOrOptions["schema"]]["Enums"][EnumName]
  : DefaultSchemaEnumNameOrOptions extends keyof DefaultSchema["Enums"]
  ? DefaultSchema["Enums"][DefaultSchemaEnumNameOrOptions]
  : never

export type CompositeTypes<
  PublicCompositeTypeNameOrOptions extends
    | keyof DefaultSchema["CompositeTypes"]
    | { schema: keyof DatabaseWithoutInternals },
  CompositeTypeName extends PublicCompositeTypeNameOrOptions extends {
    schema: keyof DatabaseWithoutInternals
  }
    ? keyof DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"]
    : never = never
> = PublicCompositeTypeNameOrOptions extends { schema: keyof DatabaseWithoutInternals }
  ? DatabaseWithoutInternals[PublicCompositeTypeNameOrOptions["schema"]]["CompositeTypes"][CompositeTypeName]
  : PublicCompositeTypeNameOrOptions extends keyof DefaultSchema["CompositeTypes"]
  ? DefaultSchema["CompositeTypes"][PublicCompositeTypeNameOrOptions]
  : never

export const Constants = {
  "public": {
          Enums: {
            "experiment_status": ["draft", "running", "stopped", "decided"],"feedback_rating": ["up", "down"],"model_stage": ["candidate", "active", "archived", "rejected"],"prediction_source_role": ["input_window", "covariate"],"processing_purpose": ["training", "forecasting", "pattern_search", "deletion"],"retrain_status": ["queued", "running", "done", "failed"],"training_status": ["queued", "running", "succeeded", "failed", "cancelled"],"training_trigger": ["initial", "scheduled", "new_data", "performance", "user_request"]
          }
        }
} as const
